"""Instructions per traced call, counted by valgrind's callgrind: stable on a busy machine.

Runs each scenario of ``N`` calls of a trivial callee in a child process under
``valgrind --tool=callgrind --separate-threads=yes`` and reads the main thread's instruction
count; two runs with different ``N`` cancel start-up and exit, so the difference divided by the
difference in calls is the cost of one call, exporter thread excluded (the child exits with
``os._exit`` right after its loop, so that no shutdown work on the main thread is counted). The
loops are the ones ``benches/overhead.py`` times: ``fn(1)`` and ``obj.work(1)`` under
``for _ in repeat(None, n)`` inside a function, and, like that benchmark, the child imports
``opentelemetry.trace`` first (so that every root call looks for a current OpenTelemetry span;
``--no-otel`` leaves it out).

Scenarios (each compared with the undecorated loop of its own shape):

* ``plain_function``, ``plain_method``: undecorated ``work(x)`` and ``obj.work(x)``.
* ``sampled_function``, ``sampled_method``: ``@callspan.trace``, ``always_on``, file exporter.
* ``unsampled``: ``always_off``.
* ``disabled``: ``OTEL_SDK_DISABLED=true``: the wrapper alone (a C callable that calls the
  wrapped function), the floor every traced call stands on.
* ``c_forwarding_wrapper``: ``functools.partial(work)``, CPython's own C callable that only
  forwards the call: what CPython charges any C-level wrapper for calling a Python function
  from C, for comparison with ``disabled``.
* ``bound_method_sampled``: a traced method called through a bound method object (``f =
  obj.work; f(1)``).

    python benches/callgrind_calls.py [--calls N] [--json PATH] [--no-otel] [--keep DIR]
                                      [--only SCENARIO ...]

``--keep DIR`` keeps the callgrind output files (``cg.<scenario>.<N>-01`` is the main thread),
for ``callgrind_annotate``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import benchkit

SCENARIO = r"""
import functools, os, sys
from itertools import repeat
kind, n, spans, otel = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "otel"
if otel:
    import opentelemetry.trace  # noqa: F401  (benches/overhead.py imports the OTel SDK)
import callspan

def work(x):
    return x

class Worker:
    def work(self, x):
        return x

def function_calls(fn, n):
    for _ in repeat(None, n):
        fn(1)

def method_calls(obj, n):
    for _ in repeat(None, n):
        obj.work(1)

def bound_method_calls(obj, n):
    f = obj.work
    for _ in repeat(None, n):
        f(1)

if kind.startswith("plain"):
    traced = work
elif kind == "c_forwarding_wrapper":
    traced = functools.partial(work)
else:
    traced = callspan.trace(work)
    Worker.work = callspan.trace(Worker.work)
loop = {"plain_method": method_calls, "sampled_method": method_calls,
        "bound_method_sampled": bound_method_calls}.get(kind, function_calls)
target = Worker() if loop is not function_calls else traced
callspan.configure(sampler="always_off" if kind == "unsampled" else "always_on",
                   exporter="file", file=spans, max_queue_size="1048576")
loop(target, 1000)  # the exporter starts, the caches fill, the call sites specialise
loop(target, n)
# Out at once: what shutdown() would do on this thread (drain what the exporter thread has not
# taken yet) grows with N and is no part of a call.
os._exit(0)
"""

SCENARIOS = (
    "plain_function",
    "plain_method",
    "sampled_function",
    "sampled_method",
    "unsampled",
    "disabled",
    "c_forwarding_wrapper",
    "bound_method_sampled",
)


def baseline_of(scenario: str) -> str:
    return "plain_method" if "method" in scenario else "plain_function"


def callgrind_main_thread_ir(script: str, args: list[str], out: str, env: dict) -> int:
    """The main thread's instruction count of ``python script args`` under callgrind
    (``benchkit.callgrind_main_thread``). Also used by counting_instructions.py."""
    return benchkit.callgrind_main_thread([sys.executable, script, *args], env, Path(out))


def main_thread_ir(kind: str, calls: int, workdir: str, otel: bool) -> int:
    out = os.path.join(workdir, f"cg.{kind}.{calls}")
    script = os.path.join(workdir, "scenario.py")
    with open(script, "w") as f:
        f.write(SCENARIO)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLSPAN_"))}
    if kind == "disabled":
        env["OTEL_SDK_DISABLED"] = "true"
    args = [kind, str(calls), os.path.join(workdir, "spans.jsonl"), "otel" if otel else "no-otel"]
    return callgrind_main_thread_ir(script, args, out, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--json")
    parser.add_argument(
        "--no-otel", action="store_true", help="do not import opentelemetry in the child"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the callgrind files in DIR")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run these scenarios only")
    args = parser.parse_args()
    wanted = args.only or SCENARIOS
    # The baselines are always measured: every row is read against one.
    kinds = [k for k in SCENARIOS if k in wanted or k in {baseline_of(w) for w in wanted}]
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for kind in kinds:
            low = main_thread_ir(kind, args.calls, workdir, not args.no_otel)
            high = main_thread_ir(kind, 2 * args.calls, workdir, not args.no_otel)
            results[kind] = (high - low) / args.calls
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for path in glob.glob(os.path.join(workdir, "cg.*")):
                shutil.copy(path, args.keep)
    version = ".".join(map(str, sys.version_info[:3]))
    otel = "not imported" if args.no_otel else "imported"
    print(f"CPython {version}, opentelemetry {otel}, {args.calls:,} and {2 * args.calls:,} calls")
    print(f"{'scenario':<22} {'Ir/call':>9} {'over its baseline':>18}")
    for kind, ir in results.items():
        print(f"{kind:<22} {ir:>9.1f} {ir - results[baseline_of(kind)]:>18.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "python": version,
                    "opentelemetry_imported": not args.no_otel,
                    "calls": args.calls,
                    "instructions_per_call": results,
                    "over_baseline": {k: v - results[baseline_of(k)] for k, v in results.items()},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
