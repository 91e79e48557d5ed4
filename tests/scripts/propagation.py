"""W3C traceparent by hand: a client call injects its context into a child process's
environment; the child's traced server call continues the trace. Two asyncio tasks with
different remote parents at once never swap them."""

import asyncio
import os
import subprocess
import sys

import callspan
from scriptkit import finish, report


@callspan.trace
def server(name):
    return name


@callspan.trace
def client():
    headers = callspan.inject()
    env = dict(os.environ, TRACEPARENT=headers["traceparent"])
    subprocess.run([sys.executable, __file__, "serve"], env=env, check=True)
    return headers["traceparent"]


async def handle(traceparent):
    with callspan.remote_parent({"traceparent": traceparent}):
        await asyncio.sleep(0.01)
        server(traceparent)


async def two_requests(a, b):
    await asyncio.gather(handle(a), handle(b))


def main():
    sent = client()
    a = "00-11111111111111111111111111111111-1111111111111111-01"
    b = "00-22222222222222222222222222222222-2222222222222222-01"
    asyncio.run(two_requests(a, b))
    with callspan.remote_parent("not a traceparent"):
        server("invalid")
    report(sent=sent, a=a, b=b, extracted=str(callspan.extract({"TraceParent": a})))
    finish()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        with callspan.remote_parent(os.environ["TRACEPARENT"]):
            server("child")
        callspan.flush()
    else:
        main()
