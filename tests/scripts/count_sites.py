"""Counting every call from call sites that look alike to a per-thread call-site cache.

A counted call finds its caller edge through a cache keyed by the calling instruction, the
callee and (for a method) the class of the caller's ``self``/``cls``. Each part below makes one
of those change between calls from the same place, or makes the address of a freed caller
mean a new one; tests/test_counting.py (``sites_expected``) holds the counts each edge must
get. ``argv[1]``: rounds of run-time callers.
"""

import gc
import json
import sys

import callspan
from scriptkit import report

ROUNDS = int(sys.argv[1])


@callspan.trace
def target(x=None):
    if x == "raise":
        raise ValueError(x)
    return x


class Base:
    def go(self, x=None):
        return target(x)  # CALL:sites_polymorphic

    @classmethod
    def make(cls):
        return target()  # CALL:sites_classmethod


class Alpha(Base):
    pass


class Beta(Base):
    pass


def flaky():
    """Raising and returning from one call site, alternately."""
    for i in range(10):
        try:
            target("raise" if i % 3 == 0 else None)  # CALL:sites_flaky
        except ValueError:
            pass


def run_time_callers():
    """A class and a caller made at run time per round and freed before the next: the next
    round's often take the freed ones' addresses."""
    dead, reused = set(), 0
    for i in range(ROUNDS):
        namespace = {"target": target}
        exec(f"def caller_{i}(self):\n    return target()\n", namespace)
        cls = type(f"Dyn{i}", (), {"go": namespace[f"caller_{i}"]})
        reused += id(cls) in dead or id(cls.go.__code__) in dead
        dead.update((id(cls), id(cls.go.__code__)))
        for _ in range(2):
            cls().go()
        del cls, namespace
        gc.collect()
    return reused


# The caller's class alternating at one call site: Alpha 12, Beta 8.
for obj in [Alpha(), Beta(), Alpha(), Alpha(), Beta()] * 4:
    obj.go()
# A classmethod called through either class: Alpha 3, Beta 6.
for cls in [Alpha, Beta, Beta] * 3:
    cls.make()
# Four raised, six returned.
flaky()
reused = run_time_callers()
# Classes left out from now on: the same call site counts without a class (5 calls).
callspan.configure(capture="function,file,line,thread")
for obj in [Alpha(), Beta()] * 2 + [Alpha()]:
    obj.go()
# No caller attribute captured: no site at all (3 calls).
callspan.configure(capture="thread")
for obj in [Alpha(), Beta(), Alpha()]:
    obj.go()
report(reused_addresses=reused)
callspan.flush()
print(json.dumps(callspan.stats()))
