"""callspan: one OpenTelemetry span per call of a hot function, tagged with its caller.

Decorate a function with :func:`trace`; each call becomes a span named after it and tagged with
the *caller's* function, file, line and class (``caller.*`` attributes), shipped by a Rust
exporter thread over OTLP to Jaeger, Grafana Tempo or any OpenTelemetry Collector. Configure it
with the standard ``OTEL_*`` environment variables (or :func:`configure`); call :func:`stats` to
see what happened to every span.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from . import _callspan, _pool
from ._config import configure
from ._profile import profile, start_profile, stop_profile
from ._propagation import RemoteSpan, extract, inject, remote_parent
from ._trace import trace

__version__: str = _callspan.__version__

__all__ = [
    "RemoteSpan",
    "__version__",
    "configure",
    "destination",
    "extract",
    "flush",
    "inject",
    "profile",
    "remote_parent",
    "report",
    "shutdown",
    "start_profile",
    "stats",
    "stop_profile",
    "to_pstats",
    "trace",
]


def flush(timeout: float | None = None) -> bool:
    """Export every span queued so far.

    Waits at most ``timeout`` seconds (default ``OTEL_BSP_EXPORT_TIMEOUT``) and returns True when
    all of them were delivered. Never raises because of the exporter; Ctrl-C interrupts the
    wait with ``KeyboardInterrupt`` (the export goes on in the background).
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
    ``spans_dropped`` (and the ``dropped_*`` reasons), ``export_errors``, ``export_batches``,
    ``spans_rate_limited`` (CALLSPAN_MAX_SPANS_PER_SECOND), ``spans_below_min_duration``
    (CALLSPAN_MIN_DURATION) and ``queue_len``."""
    return _callspan.stats()


def _counted_rows() -> list[dict]:
    counting, _ = _callspan.counting()
    if not counting:
        import warnings

        warnings.warn(
            "callspan: calls are not being counted; set CALLSPAN_REPORT=1 (or a metrics exporter, "
            "OTEL_METRICS_EXPORTER=otlp) before the first traced call",
            stacklevel=3,
        )
    return _callspan.edges()


def report(file: Any = None, sort: str = "total", format: str = "text") -> str:
    """The caller report: each traced function's calls, errors, total, mean and p99 time, and the
    call sites that called it ("called by": caller function, ``file:line``, class, calls, total,
    mean), sorted by ``sort`` (``total``, ``calls``, ``mean`` or ``name``).

    Every call is counted, sampled or not, while ``CALLSPAN_REPORT`` or a metrics exporter is
    configured. ``format="json"`` gives a JSON document for tools. Writes it to ``file`` (a path
    or a text file; default stderr) and returns it.
    """
    from ._report import render

    text = render(_counted_rows(), sort, format, source=f"counted in process {os.getpid()}")
    _write_report(text, file)
    return text


def _write_report(text: str, file: Any) -> None:
    if file is None:
        sys.stderr.write(text)
    elif hasattr(file, "write"):
        file.write(text)
    else:
        with open(file, "w", encoding="utf-8") as f:
            f.write(text)


def to_pstats(path: str | os.PathLike) -> str:
    """Writes the counted calls as a pstats file: ``pstats.Stats(path)`` loads it, each traced
    function with its callers filled in, and snakeviz, tuna and gprof2dot open it. Returns the
    path."""
    from ._report import write_pstats

    return str(write_pstats(_counted_rows(), path))


def destination() -> str:
    """Where spans go, e.g. ``'OTLP/gRPC to http://localhost:4317'``."""
    return _callspan.destination()


def _flush_task_spans() -> bool:
    return _callspan.flush(None)


def _flush_at_exit() -> None:
    # Bounded by OTEL_BSP_EXPORT_TIMEOUT: exit never hangs on an unreachable collector.
    _callspan.shutdown(None)
    _report_at_exit()


def _report_at_exit() -> None:
    """``CALLSPAN_REPORT``: ``1`` prints the report on stderr, any other value names its file."""
    counting, target = _callspan.counting()
    if target is None or not counting:
        return
    from ._report import render

    text = render(_callspan.edges(), source=f"counted in process {os.getpid()}")
    try:
        _write_report(text, None if target == "1" else target)
    except OSError as error:
        sys.stderr.write(f"callspan: CALLSPAN_REPORT={target}: cannot write the report: {error}\n")


atexit.register(_flush_at_exit)


class _MultiprocessingHook:
    """Flushes multiprocessing workers, which skip ``atexit``.

    A worker started by ``fork`` or ``forkserver`` leaves through ``os._exit`` after its
    ``_bootstrap``; peers lose the spans it still holds. ``_bootstrap`` runs the after-fork
    callbacks in the child and ``threading._shutdown()`` on the way out on every CPython 3.9-3.13,
    so the callback registers a flush there.
    """

    registered = False


_mp_hook = _MultiprocessingHook()


def _flush_in_multiprocessing_child(_hook: _MultiprocessingHook) -> None:
    # Pool workers also flush each task's spans before its result goes back (issue 12, item
    # 10): ``with Pool() as pool:`` terminates them as soon as the parent has the results.
    _pool.flush_results_in_pool_worker(_flush_task_spans)
    register_atexit = getattr(threading, "_register_atexit", None)
    try:
        if register_atexit is None:
            raise AttributeError("threading._register_atexit")
        register_atexit(_flush_at_exit)
    except Exception:
        # Not available, or threading is already shutting down: fall back on a finalizer
        # (run by multiprocessing's exit function on the versions that still call it).
        sys.modules["multiprocessing.util"].Finalize(None, _flush_at_exit, exitpriority=0)


def _ensure_multiprocessing_hook() -> None:
    # Only once multiprocessing is in use: importing it here would cost every user.
    util = sys.modules.get("multiprocessing.util")
    if util is None or _mp_hook.registered:
        return
    util.register_after_fork(_mp_hook, _flush_in_multiprocessing_child)
    _mp_hook.registered = True


_ensure_multiprocessing_hook()
# A spawn child imports callspan before it unpickles its pool worker target (wrapped then), or
# while a worker unpickles its first task, after the after-fork callbacks ran (looked at now).
_pool.flush_results_in_pool_worker(_flush_task_spans)
_pool.wrap_pool_worker_in_spawn_child(_flush_task_spans)
if os.environ.get("CALLSPAN_PROFILE_INCLUDE", "").strip():
    # Profile mode from the environment: processes a framework starts inherit it.
    start_profile()
    atexit.register(stop_profile)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_ensure_multiprocessing_hook,
        # The child counts its calls from zero and exports them under its own process.pid.
        after_in_child=_callspan.restart_metrics_after_fork,
    )
