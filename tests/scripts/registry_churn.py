"""Functions decorated in a loop and classes and code created at run time (issue 12, item 7).

The registry must not keep them alive, must stay bounded, and must never take an object that
took the address of a dead one for the dead one. ``argv[1]``:

* ``closures N``: decorate N closures of one ``def`` and drop them; report resident memory
  growth, the registry's sizes and whether the closures were freed.
* ``classes N``: N rounds of a class and a function created at run time (``type()``,
  ``exec``) calling a traced function named after the round, each dropped and collected before
  the next; ``live*`` functions decorated among them with names and attributes are called at
  the end. Reports which rounds' classes were freed and how often an address was reused.
* ``edges N``: counting calls, N closures each called once and dropped, and a run-time class
  as caller; reports ``callspan.edges()`` after they are all gone.
"""

import gc
import json
import os
import sys
import weakref

import callspan
from callspan import _callspan
from scriptkit import report

MODE = sys.argv[1]
N = int(sys.argv[2])


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_handler(i):
    @callspan.trace
    def handler(x):
        return x + i

    return handler


def closures():
    # Warm up: allocator arenas, interned names, the first registrations.
    for i in range(20_000):
        make_handler(i)
    gc.collect()
    sizes_before = _callspan.registry_sizes()
    before = resident_bytes()
    last = None
    for i in range(N):
        handler = make_handler(i)
        if i == N - 1:
            last = weakref.ref(handler.__wrapped__)
    del handler
    gc.collect()
    report(
        growth_bytes=resident_bytes() - before,
        sizes_before=sizes_before,
        sizes_after=_callspan.registry_sizes(),
        last_closure_freed=last() is None,
    )


def round_caller(i):
    """A class and a function made at run time, calling a traced function named ``round{i}``."""
    callee = callspan.trace(name=f"round{i}")(lambda: i)
    namespace = {"callee": callee}
    exec(f"def caller_{i}(self):\n    return callee()\n", namespace)
    cls = type(f"Dyn{i}", (), {"go": namespace[f"caller_{i}"]})
    cls().go()
    return weakref.ref(cls), id(cls), weakref.ref(namespace[f"caller_{i}"].__code__)


def classes():
    live = []
    freed = []
    dead_ids = set()
    reused = 0
    sizes_before = None
    for i in range(N):
        if i % 10 == 0:
            live.append(
                callspan.trace(name=f"live{i}", attributes={"round": i, "kind": "live"})(
                    lambda: None
                )
            )
        class_ref, class_id, code_ref = round_caller(i)
        reused += class_id in dead_ids
        gc.collect()
        freed.append(class_ref() is None and code_ref() is None)
        dead_ids.add(class_id)
        if i == 10:
            sizes_before = _callspan.registry_sizes()
    for function in live:
        function()
    callspan.flush()
    report(
        freed=freed,
        reused_addresses=reused,
        sizes_before=sizes_before,
        sizes_after=_callspan.registry_sizes(),
    )


def edges():
    for i in range(N):
        make_handler(i)(1)
    round_caller(0)
    gc.collect()
    callspan.flush()
    report(
        edges=[
            {key: edge[key] for key in ("function", "caller_function", "caller_class", "calls")}
            for edge in _callspan.edges()
        ]
    )


{"closures": closures, "classes": classes, "edges": edges}[MODE]()
callspan.flush()
print(json.dumps(callspan.stats()))
