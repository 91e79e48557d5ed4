"""An import hook that adds a decorator to every ``def`` of chosen packages, at import time.

It rewrites the parsed AST, not the file: the decorator is appended as the innermost one (right
above the ``def``, under ``@property``, ``@classmethod``, ``@contextmanager``...), with the
``def``'s own line number, and the code is compiled from that AST. Line numbers, ``__file__``,
``inspect.getsource`` and tracebacks are the original ones; nested defs and methods are decorated
too, lambdas are not. Test modules of the package (``tests``/``test``/``testing`` packages,
``test_*.py``, ``conftest.py``) are left to pytest's own assertion-rewriting hook.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import sys

# What decorates each def, per mode: an expression, so that no import is added to the module.
DECORATORS = {
    "callspan": '__import__("callspan").trace',
    "control": '__import__("realcode_control").wrap',
}

decorated_defs = 0  # how many defs the hook decorated in this process


class _AddDecorator(ast.NodeTransformer):
    def __init__(self, expression: str):
        self.expression = expression

    def visit_FunctionDef(self, node):
        global decorated_defs
        self.generic_visit(node)
        decorator = ast.parse(self.expression, mode="eval").body
        for child in ast.walk(decorator):
            child.lineno = child.end_lineno = node.lineno
            child.col_offset = child.end_col_offset = node.col_offset
        node.decorator_list.append(decorator)
        decorated_defs += 1
        return node

    visit_AsyncFunctionDef = visit_FunctionDef


class _DecoratingLoader(importlib.machinery.SourceFileLoader):
    expression = ""

    def source_to_code(self, data, path, *, _optimize=-1):
        tree = _AddDecorator(self.expression).visit(ast.parse(data, filename=path))
        return compile(tree, path, "exec", dont_inherit=True, optimize=_optimize)


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return (
        any(part in ("tests", "test", "testing") for part in parts)
        or parts[-1].startswith("test_")
        or parts[-1] == "conftest"
    )


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, packages: set[str], expression: str):
        self.packages = packages
        self.loader_type = type("Loader", (_DecoratingLoader,), {"expression": expression})

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in self.packages or _is_test_module(name):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = self.loader_type(name, spec.origin)
        return spec


def install(packages: list[str], mode: str | None = None, decorator: str | None = None) -> None:
    """Decorate every def of ``packages`` (top-level import names) imported from now on, with
    the decorator of ``mode`` (:data:`DECORATORS`) or the expression ``decorator``."""
    if (mode is None) == (decorator is None):
        raise ValueError("give either mode or decorator")
    sys.dont_write_bytecode = True  # never cache decorated code next to the library's source
    sys.meta_path.insert(0, _Finder(set(packages), decorator or DECORATORS[mode]))
