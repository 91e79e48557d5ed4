"""The native module behind callspan (Rust, PyO3). Private: use the ``callspan`` package."""

from collections.abc import Mapping
from typing import Any, Callable

__version__: str

class TracedFunction:
    """A function traced by callspan: each call becomes a span tagged with its caller.

    A C-level vectorcall callable and method descriptor; instances carry a ``__dict__`` that
    ``functools.update_wrapper`` fills with the wrapped function's metadata. Not instantiable
    from Python: use :func:`callspan.trace`.
    """

    __wrapped__: Callable[..., Any]
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...

def traced(
    func: Callable[..., Any],
    span_name: str,
    function_name: str,
    file: str | None,
    line: int,
    attributes: Mapping[str, str | bool | int | float] | None = None,
) -> TracedFunction:
    """Register a callee (span name, module-qualified name, def file and line, static
    attributes) and wrap ``func``. Raises TypeError if ``func`` is not callable or an attribute
    value is not str, bool, int or float."""

def wrapped(obj: object) -> Callable[..., Any] | None:
    """The callable inside ``obj`` if it is a TracedFunction, else None."""

def configure(arguments: dict[str, str]) -> None:
    """Create or re-create the pipeline from string settings (keyword names of the Rust
    configuration module) layered over the environment."""

def flush(timeout: float | None = None) -> bool:
    """Export every queued span; True when all were delivered within ``timeout`` seconds
    (default OTEL_BSP_EXPORT_TIMEOUT). Releases the GIL while waiting."""

def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop the exporter thread within ``timeout`` seconds; later spans are dropped
    and counted until ``configure``."""

def stats() -> dict[str, int]:
    """Every counter: spans_started, spans_sampled, spans_exported, spans_dropped,
    dropped_queue_full, dropped_export_failed, dropped_shutdown, export_errors, export_batches,
    queue_len."""

def destination() -> str:
    """Where spans go, e.g. ``'OTLP/gRPC to http://localhost:4317'``."""

def effective_config() -> list[tuple[str, str, str]]:
    """``(setting, value, source)`` for every setting."""

def forward_diagnostics() -> None:
    """Forward buffered exporter warnings to the ``callspan`` logger now."""
