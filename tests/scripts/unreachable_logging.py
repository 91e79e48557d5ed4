"""Exports fail (nothing listens at the endpoint): the application sees no exception, and the
failures reach the `callspan` logger as warnings, rate-limited to one per callsite per interval."""

import logging

import callspan
from scriptkit import report

records = []


class Collect(logging.Handler):
    def emit(self, record):
        records.append((record.name, record.levelname, record.getMessage()))


logging.getLogger("callspan").addHandler(Collect())


@callspan.trace
def work(i):
    return i


def main():
    for _round in range(5):
        for i in range(20):
            work(i)
        delivered = callspan.flush(timeout=5)
        assert delivered is False
    stats = callspan.stats()
    report(records=records, stats=stats)


if __name__ == "__main__":
    main()
