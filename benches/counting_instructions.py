"""What counting every call costs per call, in instructions (valgrind's callgrind), which a shared
machine cannot disturb the way it disturbs time.

For each row — the sampled and the unsampled (``always_off``) call of ``@callspan.trace``, with
counting on (``metrics_exporter="otlp"``, so every call is counted per caller edge) and off
(``metrics_exporter="none"``) — it runs a child under ``valgrind --tool=callgrind`` twice, with N
and 2N calls of the traced function, and reports (Ir(2N) - Ir(N)) / N: the main thread's
instructions per call (``--separate-threads=yes``, ``PYTHONHASHSEED=0``, as callgrind_calls.py:
the exporter threads' work is not the call's), start-up and shutdown cancelled out.

    python benches/counting_instructions.py [--calls N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from callgrind_calls import callgrind_main_thread_ir

CHILD = """
import sys
from itertools import repeat

import callspan

sampler, metrics, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
callspan.configure(sampler=sampler, metrics_exporter=metrics, exporter="none",
                   max_queue_size=2 * n + 16)

@callspan.trace
def work(x):
    return x

def calls(fn, n):
    # As benches/overhead.py's loop: no object allocated per call, so the allocator's state
    # (which differs between runs with counting on and off) adds nothing to the difference.
    for _ in repeat(None, n):
        fn(1)

calls(work, 1000)  # warm the caches, the edge table and the exporter start
calls(work, n)
"""

ROWS = (
    ("sampled", "always_on"),
    ("unsampled_always_off", "always_off"),
)


def instructions(sampler: str, metrics: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLSPAN_"))}
        out = os.path.join(tmp, "callgrind.out")
        return callgrind_main_thread_ir(script, [sampler, metrics, str(n)], out, env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--json")
    args = parser.parse_args()
    n = args.calls
    results = {}
    for name, sampler in ROWS:
        per_call = {}
        for metrics in ("none", "otlp"):
            once = instructions(sampler, metrics, n)
            twice = instructions(sampler, metrics, 2 * n)
            per_call[metrics] = (twice - once) / n
        results[name] = {
            "instructions_per_call_counting_off": round(per_call["none"], 1),
            "instructions_per_call_counting_on": round(per_call["otlp"], 1),
            "counting_adds": round(per_call["otlp"] - per_call["none"], 1),
        }
        print(
            f"{name:<22} off {per_call['none']:8.1f}  on {per_call['otlp']:8.1f}  "
            f"counting adds {per_call['otlp'] - per_call['none']:6.1f} instructions/call"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
