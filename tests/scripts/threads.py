"""Traced calls from named threads and from the main thread: thread.id / thread.name per span."""

import threading

import callspan
from scriptkit import finish, report

WORKER_COUNT = 3
thread_ids = {}  # thread name -> [threading.get_ident(), threading.get_native_id()]
# Idents of finished threads get reused; holding all workers alive at a barrier keeps them distinct.
all_workers_alive = threading.Barrier(WORKER_COUNT)


@callspan.trace
def resize_tile(index):
    return index * 2


def remember_thread():
    thread_ids[threading.current_thread().name] = [
        threading.get_ident(),
        threading.get_native_id(),
    ]


def worker(index):
    remember_thread()
    all_workers_alive.wait(timeout=30)
    resize_tile(index)  # CALL:worker


def main():
    threads = [
        threading.Thread(target=worker, args=(i,), name=f"resizer-{i}") for i in range(WORKER_COUNT)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    remember_thread()
    resize_tile(99)  # CALL:main
    report(thread_ids=thread_ids, worker_count=WORKER_COUNT)


main()
finish()
