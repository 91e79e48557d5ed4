"""The ``@callspan.trace`` decorator: describes the callee once and wraps it in the native
``TracedFunction``, whose calls are the hot path (no Python frame of ours runs per call)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import linecache
from collections.abc import Mapping
from typing import Any, Callable, TypeVar, overload

from . import _callspan

F = TypeVar("F", bound=Callable[..., Any])

# How far below co_firstlineno (the first decorator's line) the `def` line may be searched.
_MAX_DECORATOR_LINES = 100


def _def_line(code: Any) -> int:
    """The line of the ``def`` statement: ``co_firstlineno`` is the first decorator's line."""
    first = code.co_firstlineno
    lines = linecache.getlines(code.co_filename)
    for index in range(first - 1, min(len(lines), first - 1 + _MAX_DECORATOR_LINES)):
        stripped = lines[index].lstrip()
        if stripped.startswith(("def ", "async def ")):
            return index + 1
    return first


def _describe(func: Callable[..., Any], name: str | None) -> tuple[str, str, str | None, int]:
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not isinstance(qualname, str):
        qualname = type(func).__qualname__
    # A function defined by exec() with globals lacking __name__ has __module__ None: its
    # function name is then the bare qualified name (no invented module such as "builtins").
    module = getattr(func, "__module__", None)
    file: str | None = None
    line = 0
    code = getattr(inspect.unwrap(func), "__code__", None) if inspect.isfunction(func) else None
    if code is not None:
        file = code.co_filename
        line = _def_line(code)
    function_name = f"{module}.{qualname}" if isinstance(module, str) else qualname
    return name or qualname, function_name, file, line


# What calling the traced function returns; the native wrapper keeps one span per call
# across the steps of a coroutine or generator (values match steps::Kind in Rust).
_PLAIN, _COROUTINE, _GENERATOR, _ASYNC_GENERATOR = 0, 1, 2, 3


def _kind(func: Any) -> int:
    if inspect.isasyncgenfunction(func):
        return _ASYNC_GENERATOR
    if inspect.iscoroutinefunction(func):
        return _COROUTINE
    if inspect.isgeneratorfunction(func):
        return _GENERATOR
    return _PLAIN


def _mark_coroutine_function(traced: Any) -> None:
    # Frameworks ask inspect/asyncio whether a callable is `async def`; our object is not a
    # Python function, so it says so the documented ways.
    mark = getattr(inspect, "markcoroutinefunction", None)  # 3.12+
    if mark is not None:
        mark(traced)
    traced._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", None)


def _wrap(
    func: Any,
    name: str | None,
    attributes: Mapping[str, Any] | None,
    sample_rate: float | None = None,
) -> Any:
    if isinstance(func, (classmethod, staticmethod)):
        # @callspan.trace above @classmethod/@staticmethod: trace the function inside.
        return type(func)(_wrap(func.__func__, name, attributes, sample_rate))
    if isinstance(func, (property, functools.cached_property)):
        raise TypeError(
            f"callspan.trace cannot decorate a {type(func).__name__} (it is not callable): "
            f"put @callspan.trace below @{type(func).__name__}, on the getter function"
        )
    if isinstance(func, str):
        raise TypeError(
            f"callspan.trace can only decorate a callable, not the str {func!r}; "
            "to name the span, use @callspan.trace(name=...)"
        )
    if not callable(func):
        raise TypeError(
            f"callspan.trace can only decorate a callable, not {type(func).__name__!s} "
            f"object {func!r}"
        )
    if attributes is not None and not isinstance(attributes, Mapping):
        raise TypeError(
            "callspan.trace: attributes must be a mapping of str to str, bool, int or float"
        )
    if name is not None and not isinstance(name, str):
        raise TypeError(f"callspan.trace: name must be a str, not {type(name).__name__}")
    if sample_rate is not None and (
        isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float))
    ):
        raise TypeError("callspan.trace: sample_rate must be a number between 0 and 1")
    span_name, function_name, file, line = _describe(func, name)
    kind = _kind(func)
    traced = _callspan.traced(
        func,
        span_name,
        function_name,
        file,
        line,
        dict(attributes) if attributes else None,
        kind,
        None if sample_rate is None else float(sample_rate),
    )
    functools.update_wrapper(traced, func)
    if kind == _COROUTINE:
        _mark_coroutine_function(traced)
    return traced


@overload
def trace(func: F, /) -> F: ...
@overload
def trace(
    func: None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    sample_rate: float | None = None,
) -> Callable[[F], F]: ...
def trace(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    sample_rate: float | None = None,
) -> Any:
    """Trace every call of ``func``: one span per (sampled) call, tagged with its caller.

    Use as ``@callspan.trace`` or ``@callspan.trace(name=..., attributes={...})`` on functions,
    methods, classmethods and staticmethods (above or below ``@classmethod`` both work). The
    result keeps ``__name__``, ``__qualname__``, ``__doc__``, ``__module__``, ``__wrapped__`` and
    the signature, and binds like a function. ``name`` replaces the span name (default: the
    callee's ``__qualname__``); ``attributes`` are added to every span of this function;
    ``sample_rate`` (0..1) records that fraction of this function's calls, on top of the sampler
    (it wins over ``CALLSPAN_SAMPLE``).

    Attributes such as ``__defaults__``, ``__kwdefaults__``, ``__code__`` and
    ``__annotations__`` are the wrapped function's own (read and written through), so
    ``inspect`` sees it. Raises TypeError at decoration time if ``func`` is not callable (for a
    ``@property``, decorate its getter function below ``@property`` instead).
    """
    if func is None:
        return lambda f: _wrap(f, name, attributes, sample_rate)
    return _wrap(func, name, attributes, sample_rate)
