"""Instructions per span on each thread of an exporting process, counted by valgrind's callgrind.

The exporter's cost decides how much CPU it needs to keep up, and so whether it keeps up when
another process takes a core; on a loaded machine CPU times and delivery rates are noise, while
instruction counts are not. A child process makes ``N`` sampled spans of a trivial traced
function from its main thread, exporting with OTLP/gRPC to the counting receiver
(``counting_receiver.py``, in this process, outside valgrind), then flushes; it runs under
``valgrind --tool=callgrind --separate-threads=yes``. Two runs with ``N`` and ``2 N`` spans
cancel start-up and exit, so the difference of each thread's instruction count divided by ``N``
is what one more span costs that thread: the hot thread (the push included) and
``callspan-export`` (pop, encode, and the sending: tonic/h2, the system calls' user side).
Builds that sent from a second runtime thread show it as ``callspan-export-io``.
Every span must arrive (the queue is made large enough for valgrind's slow threads; the
batch size stays the default, which is what sets the per-request costs).

    python benches/callgrind_exporter.py [--spans N] [--json PATH] [--setting key=value ...]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import benchkit  # noqa: F401  (puts tests/ on sys.path for the receiver's protos)
from counting_receiver import CountingReceiver

SCENARIO = r"""
import json, sys, callspan
endpoint, n, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
callspan.configure(sampler="always_on", endpoint=endpoint, **settings)
@callspan.trace
def work(x):
    return x
work(0)
for i in range(n):
    work(i)
assert callspan.flush(600.0)
print("STATS " + json.dumps(callspan.stats()), flush=True)
callspan.shutdown()
"""

# callgrind numbers threads in creation order: the main thread, then callspan-export, then (in
# builds that had one) its runtime's I/O worker. Blocking-pool threads (DNS) would come later.
THREADS = {"01": "main (hot)", "02": "callspan-export", "03": "callspan-export-io"}


def thread_instructions(out: str) -> dict[str, int]:
    counts = {}
    for path in sorted(glob.glob(out + "-*")):
        number = path.rsplit("-", 1)[1]
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    counts[THREADS.get(number, f"thread {number}")] = int(line.split()[1])
                    break
    return counts


def run(receiver: CountingReceiver, spans: int, settings: dict, workdir: str) -> dict[str, int]:
    out = os.path.join(workdir, f"cg.{spans}")
    script = os.path.join(workdir, "scenario.py")
    with open(script, "w") as f:
        f.write(SCENARIO)
    receiver.reset()
    env = {k: v for k, v in os.environ.items() if not k.startswith(benchkit.ISOLATED_ENV_PREFIXES)}
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            sys.executable,
            script,
            receiver.endpoint,
            str(spans),
            json.dumps(settings),
        ],
        check=True,
        capture_output=True,
        text=True,
        # A fixed hash seed: dict and set layouts (and so instruction counts) vary with it.
        env={**env, "PYTHONHASHSEED": "0"},
    )
    stats = json.loads(
        next(line for line in completed.stdout.splitlines() if line.startswith("STATS "))[6:]
    )
    received = receiver.wait_until_quiet(quiet=0.5)
    if received != spans + 1 or stats["spans_dropped"]:
        raise RuntimeError(
            f"{spans + 1} spans made, {received} received, {stats['spans_dropped']} dropped: "
            "the per-span counts would be wrong"
        )
    return {**thread_instructions(out), "requests": receiver.requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--json")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a callspan.configure() keyword for the child (repeatable)",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the callgrind files in DIR")
    args = parser.parse_args()
    # Large enough that valgrind's slow exporter never drops (each run must count every span).
    settings = {"max_queue_size": 4 * args.spans}
    settings.update(dict(s.split("=", 1) for s in args.setting))
    with CountingReceiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or tmp
        os.makedirs(workdir, exist_ok=True)
        low = run(receiver, args.spans, settings, workdir)
        high = run(receiver, 2 * args.spans, settings, workdir)
    per_span = {
        name: (high[name] - low.get(name, 0)) / args.spans for name in high if name != "requests"
    }
    requests = high["requests"] - low["requests"]
    print(f"settings: {settings}; {requests} more requests for {args.spans} more spans")
    print(f"{'thread':<20} {'Ir/span':>9}")
    for name, ir in per_span.items():
        print(f"{name:<20} {ir:>9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "settings": settings,
                    "spans": args.spans,
                    "requests": requests,
                    "ir_per_span": per_span,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
