"""What the profile hook costs per call of a generator and of a coroutine, in instructions
(valgrind's callgrind), next to the same loop without the hook.

A generator call here is ``for _ in gen(i): pass`` over two yields (events: start, yield,
resume, yield, resume, return); a coroutine call is one ``send(None)`` to completion (start,
return; the span is published in the task's context). The hook includes only the callee and
samples every call (``always_on``, spans to a file). Each row runs in a child under callgrind
with N and 2N calls (``benchkit.instructions_per_call``: main-thread instructions per call,
start-up and exit cancelled out, the exporter thread not counted). Plain function calls are
``benches/hook.py --instructions``.

    python benches/hook_steps_instructions.py [--calls N] [--json PATH]
"""

from __future__ import annotations

import os
import sys
import tempfile

import benchkit

CHILD = """
import sys
import callspan

def gen(x):
    yield x
    yield x

async def coro(x):
    return x

def run_gen(n):
    for i in range(n):
        for _ in gen(i):
            pass

def run_coro(n):
    for i in range(n):
        c = coro(i)
        try:
            c.send(None)
        except StopIteration:
            pass

args = sys.argv[1:]
kind, hooked, spans = args[0], args[1] == "hook", args[2]
n = int(args[args.index("--calls") + 1])
run = run_gen if kind == "generator" else run_coro
callspan.configure(sampler="always_on", exporter="file", file=spans, max_queue_size=2**20)
if hooked:
    callspan.start_profile([f"__main__.{'gen' if kind == 'generator' else 'coro'}"])
run(1000)  # caches fill, code objects are decided
run(n)
if hooked:
    callspan.stop_profile()
callspan.shutdown(30.0)
"""

KINDS = ("generator", "coroutine")


def main() -> None:
    p = benchkit.parser(__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20_000)
    args = p.parse_args()
    calls = 2_000 if args.smoke else args.calls
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        script = os.path.join(workdir, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        spans = os.path.join(workdir, "spans.jsonl")
        for kind in KINDS:
            plain, hooked = (
                benchkit.instructions_per_call([script, kind, mode, spans], calls)
                for mode in ("plain", "hook")
            )
            rows.append(
                {
                    "kind": kind,
                    "plain_instructions_per_call": round(plain, 1),
                    "hook_sampled_instructions_per_call": round(hooked, 1),
                    "hook_overhead_instructions": round(hooked - plain, 1),
                }
            )
    print(f"CPython {sys.version.split()[0]}: main-thread instructions per call (callgrind)")
    benchkit.print_table(
        ["callee", "plain Ir/call", "hook sampled Ir/call", "hook overhead Ir"],
        [
            [
                r["kind"],
                r["plain_instructions_per_call"],
                r["hook_sampled_instructions_per_call"],
                r["hook_overhead_instructions"],
            ]
            for r in rows
        ],
    )
    benchkit.write_json(
        args.json,
        {
            "benchmark": "hook_steps_instructions",
            "smoke": args.smoke,
            "machine": benchkit.machine(),
            "calls": calls,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
