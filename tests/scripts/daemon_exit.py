"""Daemon threads inside traced calls when the interpreter exits (issue 12, item 1).

CPython 3.9-3.13 end a daemon thread that wakes during finalization with ``pthread_exit``; its
forced unwind crosses callspan's frames of the traced call the thread is in. The process must
exit 0, like plain Python. ``argv[1]``: ``plain`` (a traced poller that sleeps), ``generator``,
``coroutine`` or ``async_generator`` (the poller is a traced generator / coroutine / async
generator stepping while it sleeps), ``callable`` (the poller is a traced instance with
``__call__``: a callable without a vectorcall slot, called through ``tp_call``).
Reports how many ``tick`` calls had returned before the main thread started exiting: their
spans must all arrive.
"""

import asyncio
import sys
import threading
import time

import callspan
from scriptkit import report

MODE = sys.argv[1] if len(sys.argv) > 1 else "plain"
THREADS = 4
TICKS_BEFORE_EXIT = 20  # per thread
ticks = [0] * THREADS
ready = threading.Barrier(THREADS + 1)


@callspan.trace
def tick(n):
    return n + 1


@callspan.trace
def poll(index):
    while True:
        ticks[index] = tick(ticks[index])
        if ticks[index] == TICKS_BEFORE_EXIT:
            ready.wait()
        time.sleep(0.0005)  # wakes again and again while the interpreter finalizes


class Poller:
    def __call__(self, index):
        while True:
            ticks[index] = tick(ticks[index])
            if ticks[index] == TICKS_BEFORE_EXIT:
                ready.wait()
            time.sleep(0.0005)


poll_callable = callspan.trace(Poller())


@callspan.trace
def poll_generator(index):
    while True:
        ticks[index] = tick(ticks[index])
        time.sleep(0.0005)
        yield ticks[index]


@callspan.trace
async def poll_coroutine(index):
    while True:
        ticks[index] = tick(ticks[index])
        if ticks[index] == TICKS_BEFORE_EXIT:
            ready.wait()
        time.sleep(0.0005)
        await asyncio.sleep(0)


@callspan.trace
async def poll_async_generator(index):
    while True:
        ticks[index] = tick(ticks[index])
        time.sleep(0.0005)
        yield ticks[index]


async def consume_async_generator(index):
    async for count in poll_async_generator(index):
        if count == TICKS_BEFORE_EXIT:
            ready.wait()


def run(index):
    if MODE == "plain":
        poll(index)
    elif MODE == "callable":
        poll_callable(index)
    elif MODE == "generator":
        for count in poll_generator(index):
            if count == TICKS_BEFORE_EXIT:
                ready.wait()
    elif MODE == "coroutine":
        asyncio.run(poll_coroutine(index))
    else:
        asyncio.run(consume_async_generator(index))


for index in range(THREADS):
    threading.Thread(target=run, args=(index,), daemon=True).start()
ready.wait()
report(ticks_before_exit=sum(ticks), mode=MODE)
