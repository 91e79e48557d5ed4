"""The native module behind callspan (Rust, PyO3). Private: use the ``callspan`` package."""

from collections.abc import Mapping
from typing import Any, Callable, final

__version__: str

@final
class TracedFunction:
    """A function traced by callspan: each call becomes a span tagged with its caller.

    A C-level vectorcall callable and method descriptor; instances carry a ``__dict__`` that
    ``functools.update_wrapper`` fills with the wrapped function's metadata. Not instantiable
    from Python: use :func:`callspan.trace`.
    """

    __wrapped__: Callable[..., Any]
    # Read from and written to the wrapped function (AttributeError if it has none):
    __defaults__: tuple[Any, ...] | None
    __kwdefaults__: dict[str, Any] | None
    __code__: Any
    __globals__: dict[str, Any]
    __closure__: tuple[Any, ...] | None
    __annotations__: dict[str, Any]
    __builtins__: dict[str, Any]  # 3.10+
    __type_params__: tuple[Any, ...]  # 3.12+
    # types.FunctionType when the wrapped object is a Python function (isinstance checks),
    # else TracedFunction; type() is always TracedFunction.
    @property  # type: ignore[misc]
    def __class__(self) -> type: ...  # type: ignore[override]
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    def __set_name__(self, owner: type, name: str) -> None:
        """As ``__new__`` / ``__init_subclass__`` / ``__class_getitem__`` of ``owner``: replace
        itself with the staticmethod / classmethod ``type.__new__`` makes of a plain function."""

@final
class TracedCoroutine:
    """The coroutine a traced ``async def`` returns: one span over its awaited lifetime.
    Registered as a ``collections.abc.Coroutine``."""

    __wrapped__: Any
    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> TracedCoroutine: ...
    def __next__(self) -> Any: ...

@final
class TracedGenerator:
    """The generator a traced generator function returns: one span from the first iteration
    to exhaustion or ``close()``."""

    __wrapped__: Any
    def __iter__(self) -> TracedGenerator: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any: ...
    def close(self) -> None: ...

@final
class TracedAsyncGenerator:
    """The async generator a traced async generator function returns."""

    __wrapped__: Any
    def __aiter__(self) -> TracedAsyncGenerator: ...
    def __anext__(self) -> TracedAsyncStep: ...
    def asend(self, value: Any, /) -> TracedAsyncStep: ...
    def athrow(self, typ: Any, val: Any = None, tb: Any = None, /) -> TracedAsyncStep: ...
    def aclose(self) -> TracedAsyncStep: ...

@final
class TracedAsyncStep:
    """One awaitable step of a traced async generator."""

    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> TracedAsyncStep: ...
    def __next__(self) -> Any: ...

def traced(
    func: Callable[..., Any],
    span_name: str,
    function_name: str,
    file: str | None,
    line: int,
    attributes: Mapping[str, str | bool | int | float] | None = None,
    kind: int = 0,
    sample_rate: float | None = None,
) -> TracedFunction:
    """Register a callee (span name, module-qualified name, def file and line, static
    attributes) and wrap ``func``. ``kind``: 0 plain, 1 coroutine function, 2 generator
    function, 3 async generator function (the call then returns a Traced* wrapper that keeps
    one span across the object's steps). ``sample_rate``: this function's own rate (ValueError
    outside 0..1; default: CALLSPAN_SAMPLE decides). Raises TypeError if ``func`` is not
    callable or an attribute value is not str, bool, int or float."""

def wrapped(obj: object) -> Callable[..., Any] | None:
    """The callable inside ``obj`` if it is a TracedFunction, else None."""

def configure(arguments: dict[str, str]) -> None:
    """Create or re-create the pipeline from string settings (keywords of :func:`settings`)
    layered over the environment. TypeError, and nothing changed, for a key that is not a
    keyword."""

def flush(timeout: float | None = None) -> bool:
    """Export every queued span; True when all were delivered within ``timeout`` seconds
    (default OTEL_BSP_EXPORT_TIMEOUT). Releases the GIL while waiting, in slices: a signal
    handler's exception (KeyboardInterrupt) ends the wait and is raised."""

def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop the exporter thread within ``timeout`` seconds; later spans are dropped
    and counted until ``configure``."""

def stats() -> dict[str, int]:
    """Every counter: spans_started, spans_sampled, spans_exported, spans_dropped,
    dropped_queue_full, dropped_export_failed, dropped_shutdown, export_errors, export_batches,
    spans_rate_limited, spans_below_min_duration, queue_len (the queue holds
    OTEL_BSP_MAX_QUEUE_SIZE spans when that is set, else as many as CALLSPAN_MAX_QUEUE_BYTES,
    default 8 MiB, holds: 74,898 spans)."""

def edges() -> list[dict[str, Any]]:
    """Every caller edge counted so far: ``function``, ``function_file``, ``function_line``,
    ``caller_function``, ``caller_file``, ``caller_line``, ``caller_class``, ``error_type``
    (empty strings when absent), ``overflow``, ``calls``, ``total_ns``, ``buckets`` (calls per
    duration bucket, upper bounds ``EDGE_BUCKET_BOUNDS_NS``) and ``exemplars`` (``(trace_id,
    span_id)`` hex pairs: the latest sampled call of each bucket that has one, in bucket
    order)."""

def registry_sizes() -> dict[str, int]:
    """How many entries the registry holds: ``functions``, ``codes``, ``classes`` (one per
    distinct name, kept for the life of the process), ``live_keys`` (addresses of live code
    objects and classes it knows) and ``watched`` (those objects, watched by weak reference)."""

def otel_context_route() -> str:
    """How root calls find the current OpenTelemetry span: ``"unresolved"`` (OpenTelemetry not
    imported, or no root call since it was), ``"mapping"`` (the answer is kept per thread keyed
    by the thread's ``contextvars`` mapping, read through the thread state where the layout
    check at start passed), ``"contextvar"`` (``PyContextVar_Get`` at every root call),
    ``"get_current_span"`` (a runtime context other than OpenTelemetry's default: its public
    function) or ``"unusable"``."""

EDGE_BUCKET_BOUNDS_NS: list[int]
"""Upper bounds (inclusive, nanoseconds) of the edge duration histogram; one more bucket above."""

def counting() -> tuple[bool, str | None]:
    """``(counting, CALLSPAN_REPORT)``: whether every call is counted per caller edge (a metrics
    exporter or CALLSPAN_REPORT is configured), and where the report at exit goes."""

def restart_metrics_after_fork() -> None:
    """In a forked child: start its own metrics exporter (its counts start from zero)."""

def destination() -> str:
    """Where spans go, e.g. ``'OTLP/gRPC to http://localhost:4317'``."""

def effective_config() -> list[tuple[str, str, str]]:
    """``(setting, value, source)`` for every setting."""

def settings() -> list[tuple[str | None, list[str], str, str, str]]:
    """The table of settings, one row per setting in the README's order:
    ``(keyword, variables, kind, default, meaning)``. ``keyword`` is the ``configure()``
    keyword (None for settings read from the environment only); ``variables`` the environment
    variables, highest precedence first; ``kind`` one of ``bool``, ``text``, ``path``,
    ``choice``, ``milliseconds``, ``integer``, ``number``, ``ratio``, ``duration``,
    ``key_values``, ``sample_rules``, ``names``, ``endpoint``; ``default`` the default as the
    README shows it."""

def forward_diagnostics() -> None:
    """Forward buffered exporter warnings to the ``callspan`` logger now."""

def current_span() -> tuple[int, int, bool] | None:
    """``(trace_id, span_id, sampled)`` of the innermost traced call (this thread, else this
    context), or None."""

def set_remote_parent(trace_id: int, span_id: int, sampled: bool) -> Any:
    """Make a remote span the parent of traced calls in this context; returns a token for
    ``reset_remote_parent``. ValueError on zero ids."""

def reset_remote_parent(token: Any) -> None:
    """Undo ``set_remote_parent``."""

def start_profile(include: list[str], exclude: list[str], library: list[str]) -> None:
    """Install the profile hook for functions whose ``code.function.name`` matches an include
    glob and no exclude glob (``library``: path prefixes whose code needs a glob naming it).
    ValueError for bad globs; RuntimeError if a profile runs, if no ``sys.monitoring`` tool id
    is free (3.12+), or if another frame-evaluation function is installed (3.9-3.11, named)."""

def stop_profile() -> tuple[int, list[str]] | None:
    """Remove the profile hook; ``(functions matched, modules seen)``, None without a profile."""
