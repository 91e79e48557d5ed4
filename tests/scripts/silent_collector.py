"""Spans sent to a collector that accepts connections and never answers (issue 12, items 4-6).

``argv[1]`` says what the script does once requests to the silent collector are in flight:

* ``shutdown``: ``callspan.shutdown(timeout=1)`` while each export may take 10 s: every span
  must still be counted (exported + dropped == sampled) when it returns.
* ``configure``: re-points to ``argv[2]`` (a live receiver) with ``configure()`` while a
  second thread keeps reaching callspan (``destination()``, first calls of new functions) and
  measures the longest gap between its iterations: the old exporter's drain must not stall it.
* ``flush``: prints ``flushing`` and calls ``flush(600)``; the test sends SIGINT, which must
  raise ``KeyboardInterrupt`` out of ``flush`` at once.
"""

import os
import signal
import sys
import threading
import time

import callspan
from scriptkit import finish, report

MODE = sys.argv[1]
SPANS = 3000


@callspan.trace
def encode_row(row):
    return row * 3


for row in range(SPANS):
    encode_row(row)
# Let the exporter put requests on the wire (schedule delay 100 ms): they are now in flight.
callspan.flush(timeout=0.5)

if MODE == "shutdown":
    report(shutdown_ok=callspan.shutdown(timeout=1))
    report(**{"stats_after_shutdown": callspan.stats()})
elif MODE == "configure":
    stop = threading.Event()
    gaps = {"max_gap": 0.0, "iterations": 0}

    def reach_callspan():
        last = time.perf_counter()
        while not stop.is_set():
            callspan.destination()

            @callspan.trace
            def first_call():  # a new function: its first call reads the configuration
                return 1

            first_call()
            now = time.perf_counter()
            gaps["max_gap"] = max(gaps["max_gap"], now - last)
            gaps["iterations"] += 1
            last = now
            time.sleep(0.005)

    thread = threading.Thread(target=reach_callspan)
    thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    callspan.configure(endpoint=sys.argv[2])
    configure_seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    for row in range(100):
        encode_row(row)
    report(configure_seconds=configure_seconds, **gaps)
    finish()
elif MODE == "flush":
    # A child started in the background inherits SIGINT ignored; Ctrl-C must raise here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print("flushing", flush=True)
    started = time.perf_counter()
    try:
        callspan.flush(600)
        report(interrupted=False)
    except KeyboardInterrupt:
        report(interrupted=True, waited=time.perf_counter() - started)
    report(stats=callspan.stats())
    # Done: the exit's own flush would wait for the silent collector (bounded by the 600 s
    # OTEL_BSP_EXPORT_TIMEOUT this test sets); exit bounds are the subject of other tests.
    os._exit(0)
