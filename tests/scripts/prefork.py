"""A gunicorn-style pre-fork server: the parent imports callspan and makes a span, then forks
workers that each handle requests and leave with sys.exit (running atexit, like gunicorn)."""

import os
import sys

import callspan
from scriptkit import finish, report


@callspan.trace
def handle(request):
    return request * 2


@callspan.trace
def boot():
    return "booted"


def worker(index):
    for request in range(4):
        handle(index * 100 + request)
    sys.exit(0)


def main():
    boot()
    pids = []
    for index in range(3):
        pid = os.fork()
        if pid == 0:
            try:
                worker(index)  # leaves through sys.exit: atexit runs, as in gunicorn
            except Exception:
                os._exit(1)
        pids.append(pid)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    report(workers=pids, worker_status=codes, parent=os.getpid())
    finish()


if __name__ == "__main__":
    main()
