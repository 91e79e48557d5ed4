"""Spans for the caller view: one traced function, three callers, one of which raises.

Run with the file exporter (CALLSPAN_EXPORTER=file, CALLSPAN_FILE=...). ``Resizer.resize``
makes the most calls on the biggest inputs; ``thumbnail`` calls with tiny ones; ``Cropper.crop``
sometimes hands over a bad input, so that edge has errors. ``load`` is traced too and calls
``checksum``, so the graph has a traced caller.
"""

import callspan
from scriptkit import report


@callspan.trace
def checksum(data):
    if data is None:
        raise ValueError("no data")
    return sum(data) % 251


class Resizer:
    def resize(self, size):
        return checksum(list(range(size)))  # CALL:resize


class Cropper:
    def crop(self, size):
        try:
            return checksum(None if size % 4 == 0 else list(range(size)))  # CALL:crop
        except ValueError:
            return -1


def thumbnail():
    return checksum([1, 2, 3])  # CALL:thumbnail


@callspan.trace
def load(size):
    return checksum(list(range(size)))  # CALL:load


def main():
    resizer, cropper = Resizer(), Cropper()
    for _ in range(60):
        resizer.resize(20_000)
    for size in range(1, 21):
        cropper.crop(size)
    for _ in range(10):
        thumbnail()
    for _ in range(5):
        load(100)
    callspan.flush(10)
    report(script_file=__file__)


main()
