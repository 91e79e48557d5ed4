"""Profile mode: caller-attributed spans for a program that does not import or decorate anything.

Run it under callspan, the way ``python -m cProfile`` is run::

    python -m callspan run examples/profile_mode.py

``callspan run`` traces every function of ``__main__`` (the default ``--include``; add
``--include 'mypkg.*'`` for a package), so ``Transformer.apply_transform`` gets one span per
call, tagged with its callers ``Rotator.rotate_image`` and ``Scaler.scale_image``, exactly as
``@callspan.trace`` would make them. ``sorted``, ``sum`` and other builtins make no spans. Run
without ``callspan run`` it is just a program: it prints the same result and says that it was not
profiled.
"""

from __future__ import annotations

import sys


class Transformer:
    def apply_transform(self, pixels, matrix):
        return [sum(p * m for p, m in zip(row, matrix)) for row in pixels]


class Rotator(Transformer):
    def rotate_image(self, pixels, degrees):
        return self.apply_transform(pixels, [degrees % 360, 1, 0])


class Scaler(Transformer):
    def scale_image(self, pixels, factor):
        return self.apply_transform(pixels, [factor, factor, 1])


def run_pipeline(images: int) -> int:
    pixels = [[1, 2, 3], [4, 5, 6]]
    rotator, scaler = Rotator(), Scaler()
    checksum = 0
    for i in range(images):
        checksum += sum(sorted(rotator.rotate_image(pixels, i * 15)))
        checksum += sum(sorted(scaler.scale_image(pixels, 2)))
    return checksum


def main() -> int:
    checksum = run_pipeline(25)
    print(f"checksum {checksum}")
    callspan = sys.modules.get("callspan")
    if callspan is None:
        print("not profiled: run it as `python -m callspan run examples/profile_mode.py`")
        return 0
    # Under `callspan run`: say where the spans went (the program itself stays undecorated).
    delivered = callspan.flush(timeout=10)
    stats = callspan.stats()
    print(f"spans exported: {stats['spans_exported']}, dropped: {stats['spans_dropped']}")
    print(f"spans went to {callspan.destination()}" + ("" if delivered else " (not all)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
