"""multiprocessing pools with each start method: every span from the workers arrives when the
pool is closed and joined normally — fork workers leave through os._exit, skipping atexit."""

import multiprocessing
import os
import sys

from scriptkit import finish, report
from workers import resize


def main(method):
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        results = pool.map(resize, range(20))
        pool.close()
        pool.join()
    report(method=method, results=results, parent=os.getpid())
    finish()


if __name__ == "__main__":
    main(sys.argv[1])
