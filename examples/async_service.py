"""An asyncio service: two request handlers share traced coroutines, run concurrently.

``handle_profile`` and ``handle_feed`` both await the traced ``fetch_user``; ``handle_feed``
also awaits the traced ``fetch_posts`` for several users at once (``asyncio.gather``). Each
handler call is traced too, so it is the parent of the calls it awaits, and concurrent tasks
never cross parents. In the view, ``fetch_user`` has two callers with their own times.

    python examples/async_service.py
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import callspan  # noqa: E402
import where_spans_go  # noqa: E402


@callspan.trace
async def fetch_user(user_id: int) -> dict:
    await asyncio.sleep(0.001)  # stands in for a database round trip
    return {"id": user_id, "name": f"user{user_id}"}


@callspan.trace
async def fetch_posts(user_id: int) -> list:
    await asyncio.sleep(0.002)
    return [f"post {user_id}.{n}" for n in range(3)]


class Service:
    @callspan.trace
    async def handle_profile(self, user_id: int) -> dict:
        return await fetch_user(user_id)

    @callspan.trace
    async def handle_feed(self, user_id: int) -> list:
        user = await fetch_user(user_id)
        friends = [user["id"] + n for n in range(1, 4)]
        fetches = []
        for friend in friends:
            fetches.append(fetch_posts(friend))
        posts = await asyncio.gather(*fetches)
        return [post for batch in posts for post in batch]


async def serve(requests: int) -> None:
    service = Service()
    work = []
    for n in range(requests):
        work.append(service.handle_profile(n) if n % 3 else service.handle_feed(n))
    await asyncio.gather(*work)


def main() -> int:
    where_spans_go.start("async-service")
    asyncio.run(serve(30))
    return where_spans_go.finish()


if __name__ == "__main__":
    sys.exit(main())
