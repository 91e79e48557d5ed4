"""Spans far larger than usual: 400 failing calls, each with a 20 kB exception message, all
queued before one flush, so that one 512-span batch would be about 8 MB — twice the 4 MiB a gRPC
receiver accepts by default. Every span must still arrive (the exporter splits requests)."""

import callspan
from scriptkit import finish, report

CALLS = 400
MESSAGE = "pixel data rejected: " + "x" * 20_000


@callspan.trace
def reject(i):
    raise ValueError(MESSAGE)


def main():
    for i in range(CALLS):
        try:
            reject(i)
        except ValueError:
            pass
    report(calls=CALLS, message_length=len(MESSAGE))
    finish()


if __name__ == "__main__":
    main()
