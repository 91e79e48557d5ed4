"""A thread-pool job: worker threads call one traced function from two places.

``TileJob.render`` hands tiles to a ``ThreadPoolExecutor``; each worker calls the traced
``resize_tile`` from ``TileJob.process_tile``, and ``TileJob.retry_tile`` calls it again for the
tiles that failed the first time (every seventh raises). Each span carries ``thread.name``
(``tiles_0`` ...) and the caller; the failures are spans with status ERROR and an
``exception`` event.

    python examples/thread_pool_job.py
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import callspan  # noqa: E402
import where_spans_go  # noqa: E402


class TileError(Exception):
    pass


@callspan.trace
def resize_tile(tile: int, size: int, strict: bool) -> int:
    if strict and tile % 7 == 0:
        raise TileError(f"tile {tile} is corrupt")
    return sum(x * x for x in range(size))


class TileJob:
    def __init__(self, tiles: int, workers: int = 4):
        self.tiles = tiles
        self.workers = workers

    def process_tile(self, tile: int) -> int | None:
        try:
            return resize_tile(tile, 2_000, strict=True)
        except TileError:
            return None

    def retry_tile(self, tile: int) -> int:
        return resize_tile(tile, 4_000, strict=False)

    def render(self) -> int:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="tiles") as pool:
            results = list(pool.map(self.process_tile, range(self.tiles)))
            failed = [tile for tile, result in zip(range(self.tiles), results) if result is None]
            list(pool.map(self.retry_tile, failed))
        return len(failed)


def main() -> int:
    where_spans_go.start("tile-job")
    failed = TileJob(tiles=40).render()
    print(f"rendered 40 tiles, {failed} needed a retry")
    return where_spans_go.finish()


if __name__ == "__main__":
    sys.exit(main())
