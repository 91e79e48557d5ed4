"""32 threads call nested traced functions at once, then a ThreadPoolExecutor does the same:
nothing lost, nothing corrupted, and a thread's parent span never leaks into another thread."""

import threading
from concurrent.futures import ThreadPoolExecutor

import callspan
from scriptkit import finish, report

THREADS = 32
CALLS = 200
all_started = threading.Barrier(THREADS)


@callspan.trace
def inner(tag):
    return tag


@callspan.trace
def outer(tag):
    return inner(tag)


def worker(index):
    all_started.wait(timeout=30)
    for i in range(CALLS):
        outer((index, i))


def main():
    threads = [
        threading.Thread(target=worker, args=(t,), name=f"storm-{t}") for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool") as pool:
        pooled = list(pool.map(outer, range(100)))
    report(threads=THREADS, calls=CALLS, pooled=len(pooled))
    finish()


if __name__ == "__main__":
    main()
