"""asyncio: traced coroutines run concurrently (gather, create_task, TaskGroup), hand work to
threads (to_thread), get cancelled and raise; traced generators and async generators run to
exhaustion or are closed early. Each fetch(i) calls leaf-i directly and thread-leaf-i in a
worker thread, so a span parented by the wrong task shows up as a wrong name."""

import asyncio
import sys

import callspan
from scriptkit import finish, report

leaf = {i: callspan.trace(name=f"leaf-{i}")(lambda x: x) for i in range(4)}
thread_leaf = {i: callspan.trace(name=f"thread-leaf-{i}")(lambda x: x) for i in range(4)}


@callspan.trace
async def fetch(i):
    await asyncio.sleep(0.005 * (4 - i))  # later calls finish first: the tasks interleave
    leaf[i](i)
    await asyncio.to_thread(thread_leaf[i], i)
    await asyncio.sleep(0)
    return i


@callspan.trace
async def handler():
    results = list(await asyncio.gather(fetch(1), fetch(2)))
    task = asyncio.create_task(fetch(0))
    results.append(await task)
    if sys.version_info >= (3, 11):
        async with asyncio.TaskGroup() as group:
            third = group.create_task(fetch(3))
        results.append(third.result())
    return results


@callspan.trace
async def sleeper():
    await asyncio.sleep(30)


@callspan.trace
async def failing():
    await asyncio.sleep(0)
    raise KeyError("missing tile")


@callspan.trace
def numbers(n):
    for i in range(n):
        leaf[i](i)
        yield i


@callspan.trace
async def stream(n):
    for i in range(n):
        await asyncio.sleep(0)
        leaf[i](i)
        yield i


async def scenarios():
    report(handler_results=await handler())
    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        report(cancel_propagated=True)
    try:
        await failing()
    except KeyError:
        report(error_propagated=True)
    report(streamed=[x async for x in stream(3)])


def main():
    asyncio.run(scenarios())
    report(generated=list(numbers(2)))
    early = numbers(4)
    next(early)
    early.close()
    report(closed_early=True)
    finish()


if __name__ == "__main__":
    main()
