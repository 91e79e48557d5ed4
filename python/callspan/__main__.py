"""``python -m callspan config``: print the effective configuration, each value with its source."""

from __future__ import annotations

import sys

from . import _callspan


def main(argv: list[str]) -> int:
    if argv != ["config"]:
        print("usage: python -m callspan config", file=sys.stderr)
        return 2
    rows = _callspan.effective_config()
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value}  ({source})")
    print(f"{'spans go to':<{width}}  {_callspan.destination()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
