"""Real libraries' own test suites run with every function traced (see harness.py)."""
