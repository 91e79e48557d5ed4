"""Instructions per traced call, counted by valgrind's callgrind: stable on a busy machine.

Runs one scenario of ``N`` calls of a trivial callee in a child process under
``valgrind --tool=callgrind --separate-threads=yes`` and reads the main thread's instruction
count; two runs with different ``N`` cancel start-up and exit, so the difference divided by the
difference in calls is the cost of one call, exporter thread excluded. Scenarios: ``plain``
(undecorated) and ``plain_method``, ``sampled`` (``always_on``, file exporter to a temporary
file), ``unsampled`` (``always_off``), ``method_sampled`` (a decorated method).

    python benches/callgrind_calls.py [--calls N] [--json PATH]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

SCENARIO = r"""
import sys, callspan
kind, n = sys.argv[1], int(sys.argv[2])
def work(x):
    return x
class Box:
    def work(self, x):
        return x
if kind == "plain":
    f = work
elif kind == "plain_method":
    f = Box().work
elif kind == "method_sampled":
    Box.work = callspan.trace(Box.work)
    f = Box().work
else:
    f = callspan.trace(work)
callspan.configure(sampler="always_off" if kind == "unsampled" else "always_on",
                   exporter="file", file=sys.argv[3], max_queue_size="1048576")
f(0)
for i in range(n):
    f(i)
callspan.shutdown()
"""


def callgrind_main_thread_ir(script: str, args: list[str], out: str, env: dict) -> int:
    """Runs ``script args`` under callgrind (one output file per thread, ``PYTHONHASHSEED=0``)
    and returns the main thread's instruction count. Also used by counting_instructions.py."""
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            sys.executable,
            script,
            *args,
        ],
        check=True,
        capture_output=True,
        # A fixed hash seed: dict and set layouts (and so instruction counts) vary with it.
        env={**env, "PYTHONHASHSEED": "0"},
    )
    # Thread 1 is the main thread; its file ends in -01.
    (main,) = glob.glob(out + "-01")
    with open(main) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {main}")


def main_thread_ir(kind: str, calls: int, workdir: str) -> int:
    out = os.path.join(workdir, f"cg.{kind}.{calls}")
    script = os.path.join(workdir, "scenario.py")
    with open(script, "w") as f:
        f.write(SCENARIO)
    args = [kind, str(calls), os.path.join(workdir, "spans.jsonl")]
    return callgrind_main_thread_ir(script, args, out, dict(os.environ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for kind in ("plain", "plain_method", "sampled", "unsampled", "method_sampled"):
            low = main_thread_ir(kind, args.calls, workdir)
            high = main_thread_ir(kind, 2 * args.calls, workdir)
            results[kind] = (high - low) / args.calls
    print(f"{'scenario':<16} {'Ir/call':>9} {'over its baseline':>18}")
    for kind, ir in results.items():
        baseline = results["plain_method" if "method" in kind else "plain"]
        print(f"{kind:<16} {ir:>9.1f} {ir - baseline:>18.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
