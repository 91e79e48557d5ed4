"""Makes many spans for a collector that is down or silent and exits without flushing (issue 12,
item 11): callspan's exit shutdown must end within its bound whatever the queue holds.

    python exit_bound.py SPANS

Prints ``exiting`` when the interpreter begins to exit, and the stats after callspan's exit
shutdown (an ``atexit`` function registered before callspan's runs after it).
"""

import atexit
import json
import sys


def stats_after_callspan_at_exit():
    import callspan

    print(json.dumps(callspan.stats()), flush=True)


atexit.register(stats_after_callspan_at_exit)

import callspan  # noqa: E402

SPANS = int(sys.argv[1])


@callspan.trace
def encode_row(row):
    return row * 3


for row in range(SPANS):
    encode_row(row)
print("exiting", flush=True)
