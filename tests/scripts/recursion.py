"""A traced recursive function 500 levels deep: 501 spans, each the child of the one above."""

import sys

import callspan
from scriptkit import finish, report

DEPTH = 500
# Headroom in case the tracing wrapper adds a Python frame per level.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * DEPTH))


@callspan.trace
def descend(depth):
    if depth == 0:
        return 0
    return 1 + descend(depth - 1)  # CALL:recurse


def main():
    report(result=descend(DEPTH), depth=DEPTH)  # CALL:root


main()
finish()
