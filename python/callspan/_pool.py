"""Pool workers deliver a task's spans before its result reaches the parent.

``with Pool() as pool:`` ends with ``pool.terminate()``: workers are killed (SIGTERM) as soon as
the parent has its results, so whatever spans a worker still held were lost, exit flush or not.
In a pool worker, callspan flushes before each result is sent: a parent that has a result can
rely on the spans of its task having been exported. The hook is the write lock of the worker's
result queue (``SimpleQueue.put`` takes it around each send on CPython 3.9-3.13): ``worker()``
holds the queue's bound ``put`` from its start, but reads ``_wlock`` at every put, so wrapping
the lock works whenever callspan is imported in the worker: at fork (the after-fork callbacks),
in a spawn child before its process object is unpickled (the pool's ``worker`` function is
wrapped then, so the unpickled target is the wrapper), or later, when a spawn worker unpickles
its first task. The flush runs before the lock is taken, so workers do not wait for each
other's flushes.

The cost is one flush (a round trip to the collector) per result sent, i.e. per task or chunk
(docs/reliability.md). If a flush fails (the collector is down or slow) the worker stops
flushing per task and falls back on its exit flush, so a sick collector slows the tasks by one
export timeout at most.
"""

from __future__ import annotations

import sys
from typing import Any


class _FlushFirstLock:
    """A pool worker's result-queue write lock that flushes callspan before it is taken."""

    def __init__(self, lock, flush):
        self._lock = lock
        self._flush = flush
        self._flushing = True

    def __enter__(self):
        if self._flushing and not self._flush():
            self._flushing = False
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)

    def __getattr__(self, name):
        return getattr(self._lock, name)


def flush_results_in_pool_worker(flush) -> None:
    """If this process is a multiprocessing pool worker, make it flush before each result."""
    process_module = sys.modules.get("multiprocessing.process")
    pool_module = sys.modules.get("multiprocessing.pool")
    if process_module is None or pool_module is None:
        return
    process = process_module.current_process()
    args = getattr(process, "_args", None)
    if getattr(process, "_target", None) is not pool_module.worker or not args or len(args) < 2:
        return
    outqueue = args[1]  # worker(inqueue, outqueue, initializer, initargs, ...)
    lock = getattr(outqueue, "_wlock", None)
    if lock is None or isinstance(lock, _FlushFirstLock):
        return
    outqueue._wlock = _FlushFirstLock(lock, flush)


def wrap_pool_worker_in_spawn_child(flush) -> None:
    """In a spawn (or forkserver) child that is still unpickling what it is to run
    (``current_process()._inheriting``, set by ``multiprocessing.spawn._main``), wrap the pool's
    ``worker`` before the child unpickles its process object, whose target names it."""
    process_module = sys.modules.get("multiprocessing.process")
    if process_module is None or not getattr(
        process_module.current_process(), "_inheriting", False
    ):
        return
    import multiprocessing.pool as pool_module

    original: Any = pool_module.worker  # type: ignore[attr-defined]  # private, 3.9-3.13
    if getattr(original, "_callspan_wrapped", False):
        return

    def worker(inqueue: Any, outqueue: Any, *args: Any, **kwargs: Any) -> Any:
        lock = getattr(outqueue, "_wlock", None)
        if lock is not None and not isinstance(lock, _FlushFirstLock):
            outqueue._wlock = _FlushFirstLock(lock, flush)
        return original(inqueue, outqueue, *args, **kwargs)

    worker.__module__ = original.__module__
    worker.__qualname__ = original.__qualname__
    worker.__name__ = original.__name__
    worker._callspan_wrapped = True  # type: ignore[attr-defined]
    pool_module.worker = worker  # type: ignore[attr-defined]
