"""os.fork(): spans queued in the parent at fork time are sent once (by the parent); the child
exports its own through a fresh exporter. A background thread keeps the parent's exporter busy
while forking, so the fork can land mid-export."""

import os
import sys
import threading

import callspan
from scriptkit import finish, report


@callspan.trace
def before_fork(i):
    return i


@callspan.trace
def in_child(i):
    return i


@callspan.trace
def after_fork(i):
    return i


@callspan.trace
def background(i):
    return i


def busy(stop):
    i = 0
    while not stop.is_set():
        background(i)
        i += 1
        if i % 200 == 0:
            callspan.flush(timeout=5)  # keep exports in flight


def main(children):
    for i in range(10):
        before_fork(i)
    stop = threading.Event()
    thread = threading.Thread(target=busy, args=(stop,))
    thread.start()
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            for i in range(5):
                in_child(i)
            ok = callspan.flush(timeout=20)
            os._exit(0 if ok else 3)
        pids.append(pid)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    stop.set()
    thread.join()
    for i in range(3):
        after_fork(i)
    report(children=pids, child_status=codes, parent=os.getpid())
    finish()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
