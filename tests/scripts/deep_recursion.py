"""Traced recursion deeper than the C stack allows (issue 12, item 3).

With ``sys.setrecursionlimit(20000)`` untraced recursion 19,000 deep completes; traced recursion
used to overflow the C stack at about 9,000 levels (SIGSEGV). It must raise ``RecursionError``
instead, and tracing must go on working afterwards. ``argv[1]``: ``main`` (the main thread's
stack) or a stack size in bytes for a thread that runs the recursion.
"""

import sys
import threading

import callspan
from scriptkit import finish, report

DEPTH = 19_000
sys.setrecursionlimit(DEPTH + 1_000)


def untraced(n):
    return 0 if n == 0 else untraced(n - 1) + 1


@callspan.trace
def traced(n):
    return 0 if n == 0 else traced(n - 1) + 1


def run(facts):
    facts["untraced"] = untraced(DEPTH) if sys.argv[1] == "main" else None
    try:
        facts["traced"] = traced(DEPTH)
    except RecursionError as error:
        facts["recursion_error"] = str(error)
    facts["after"] = traced(10)  # tracing still works


facts = {}
if sys.argv[1] == "main":
    run(facts)
else:
    threading.stack_size(int(sys.argv[1]))
    thread = threading.Thread(target=run, args=(facts,))
    thread.start()
    thread.join()
report(**facts)
finish()
