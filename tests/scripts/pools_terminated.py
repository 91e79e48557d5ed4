"""``with Pool() as pool:`` without close/join: leaving the block terminates the workers.
Every span of a task whose result reached the parent must arrive (issue 12, item 10)."""

import multiprocessing
import os
import sys

from scriptkit import finish, report
from workers import resize

TASKS = 40

if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    with context.Pool(2) as pool:
        results = pool.map(resize, range(TASKS), chunksize=1)
    report(results=results, parent=os.getpid())
    finish()
