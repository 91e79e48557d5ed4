"""What every end-to-end script uses to tell its test what it did.

A script prints ``FACTS {json}`` lines (merged by the test) with values only the child process
can know — pids, thread ids, def lines — and ends, after an explicit
``callspan.flush()``, with ``json.dumps(callspan.stats())`` as its last stdout line, so the test
can assert that nothing was dropped.
"""

import ast
import json

import callspan

FACTS_PREFIX = "FACTS "


def report(**facts):
    print(FACTS_PREFIX + json.dumps(facts), flush=True)


def _def_line(code):
    """The line of the ``def`` statement of ``code``, found independently of callspan with ``ast``.

    ``co_firstlineno`` is the line of the first decorator (CPython 3.9-3.13); DESIGN.md's
    ``code.line.number`` is the ``def`` line, which ``ast`` reports as the node's ``lineno``.
    """
    with open(code.co_filename, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name:
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            if first == code.co_firstlineno:
                return node.lineno
    raise LookupError(f"no def of {code.co_name} starting at line {code.co_firstlineno}")


def first_line(traced):
    """The ``def`` line of the user's function behind a traced callable or descriptor."""
    target = traced
    # Peel classmethod/staticmethod (__func__) and wrappers (__wrapped__) in whatever order the
    # decorators were stacked, until the plain function with the code object is reached.
    for _ in range(10):
        code = getattr(target, "__code__", None)
        if code is not None and not hasattr(target, "__wrapped__"):
            return _def_line(code)
        target = getattr(target, "__wrapped__", None) or getattr(target, "__func__", None)
        if target is None:
            break
    raise TypeError(f"cannot find the code object behind {traced!r}")


def finish():
    """Flush explicitly and print the stats as the last stdout line."""
    report(flushed=callspan.flush(timeout=30))
    print(json.dumps(callspan.stats()), flush=True)
