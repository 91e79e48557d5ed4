"""callspan: one OpenTelemetry span per call of a hot function, tagged with its caller.

Decorate a function with :func:`trace`; each call becomes a span named after it and tagged with
the *caller's* function, file, line and class (``caller.*`` attributes), shipped by a Rust
exporter thread over OTLP to Jaeger, Grafana Tempo or any OpenTelemetry Collector. Configure it
with the standard ``OTEL_*`` environment variables (or :func:`configure`); call :func:`stats` to
see what happened to every span.
"""

from __future__ import annotations

import atexit

from . import _callspan
from ._config import configure
from ._trace import trace

__version__: str = _callspan.__version__

__all__ = [
    "__version__",
    "configure",
    "destination",
    "flush",
    "shutdown",
    "stats",
    "trace",
]


def flush(timeout: float | None = None) -> bool:
    """Export every span queued so far.

    Waits at most ``timeout`` seconds (default ``OTEL_BSP_EXPORT_TIMEOUT``) and returns True when
    all of them were delivered. Never raises because of the exporter.
    """
    return _callspan.flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop the exporter, waiting at most ``timeout`` seconds.

    Called automatically at interpreter exit. Spans made after it are dropped and counted until
    :func:`configure` is called again. Returns True when everything was delivered in time.
    """
    return _callspan.shutdown(timeout)


def stats() -> dict[str, int]:
    """Every counter: ``spans_started``, ``spans_sampled``, ``spans_exported``,
    ``spans_dropped`` (and the ``dropped_*`` reasons), ``export_errors``, ``export_batches``
    and ``queue_len``."""
    return _callspan.stats()


def destination() -> str:
    """Where spans go, e.g. ``'OTLP/gRPC to http://localhost:4317'``."""
    return _callspan.destination()


def _flush_at_exit() -> None:
    # Bounded by OTEL_BSP_EXPORT_TIMEOUT: exit never hangs on an unreachable collector.
    _callspan.shutdown(None)


atexit.register(_flush_at_exit)
