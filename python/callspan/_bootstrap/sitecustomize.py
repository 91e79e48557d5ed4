"""Put on ``PYTHONPATH`` by ``callspan run -- COMMAND``: every Python process the command starts
imports callspan, which starts the profile from ``CALLSPAN_PROFILE_INCLUDE``/``_EXCLUDE``; then
the environment's own ``sitecustomize`` (if any) runs as it would without callspan."""

import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules["sitecustomize"]
try:
    import callspan  # noqa: F401  (starts the profile from the environment)
finally:
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        pass
