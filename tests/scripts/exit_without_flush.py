"""Makes spans and exits without callspan.flush() or shutdown(): callspan must flush at exit.

Also used with the collector down: the process must still exit within the export timeout bound.
"""

import sys

import callspan

SPAN_COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


@callspan.trace
def encode_row(row):
    return row * 3


for row in range(SPAN_COUNT):
    encode_row(row)  # CALL:loop

print(f"made {SPAN_COUNT} spans", flush=True)
