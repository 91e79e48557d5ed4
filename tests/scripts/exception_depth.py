"""One exception unwinding through 500 traced levels, and messages read with and without __str__.

Counts how often the user exception's ``__str__`` runs: callspan describes an exception once,
however many traced layers it crosses.
"""

import errno
import sys

import callspan
from scriptkit import finish, report

DEPTH = 500
sys.setrecursionlimit(DEPTH * 4 + 1000)
str_calls = 0


@callspan.trace
def count_str_call():
    global str_calls
    str_calls += 1


class Boom(Exception):
    def __str__(self):
        count_str_call()  # traced, but not recorded: describing is not the program's work
        return f"boom after {self.args[0]} levels"


class Quiet(Exception):
    """Keeps BaseException.__str__: its message is read from args."""


@callspan.trace
def descend(level):
    if level == 0:
        raise Boom(DEPTH)  # RAISE:boom
    return descend(level - 1)  # CALL:descend


@callspan.trace
def fail_with(error):
    raise error  # RAISE:fail_with


def main():
    try:
        descend(DEPTH - 1)  # CALL:top
    except Boom as error:
        report(boom_str_calls=str_calls, boom_is_intact=error.args == (DEPTH,))
    for error in (
        Quiet("quiet message"),
        KeyError("missing"),
        OSError(errno.ENOENT, "No such file"),
        ValueError(),
        ValueError("two", 2),
    ):
        try:
            fail_with(error)  # CALL:fail_with
        except Exception:
            pass
    report(str_calls_after=str_calls)


main()
finish()
