"""callspan's own per-call cost on any CPython 3.9-3.13, against cProfile in the same run.

The full peer comparison (benches/overhead.py) needs the OpenTelemetry SDK exporter and yappi,
which not every version can install; this one needs only callspan (and the OpenTelemetry API for
the ``CALLSPAN_OTEL_CONTEXT`` row), so the versions can be compared with one command:
``make bench-versions-core``. Interleaved rounds, median ns per call; spans go nowhere
(exporter ``none``) so that only the calling thread's cost is measured.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import statistics
import sys
import time

import callspan


def plain(x):
    return x


class Box:
    def method(self, x):
        return x


traced = callspan.trace(plain)


class TracedBox:
    @callspan.trace
    def method(self, x):
        return x


def time_function(f, n):
    start = time.perf_counter_ns()
    for i in range(n):
        f(i)
    return (time.perf_counter_ns() - start) / n


def time_method(obj, n):
    start = time.perf_counter_ns()
    for i in range(n):
        obj.method(i)
    return (time.perf_counter_ns() - start) / n


def with_cprofile(n):
    profile = cProfile.Profile()
    profile.enable()
    try:
        return time_function(plain, n)
    finally:
        profile.disable()


def otel_available():
    try:
        import opentelemetry.context  # noqa: F401

        return True
    except ImportError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run, to prove it works")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    calls, rounds = (20_000, 3) if args.smoke else (300_000, 15)
    queue = {"exporter": "none", "max_queue_size": 1_000_000, "max_export_batch_size": 4096}
    variants = {
        "plain_function": (None, lambda: time_function(plain, calls)),
        "plain_method": (None, lambda: time_method(Box(), calls)),
        "cprofile": (None, lambda: with_cprofile(calls)),
        "sampled_function": ({"sampler": "always_on"}, lambda: time_function(traced, calls)),
        "sampled_method": ({"sampler": "always_on"}, lambda: time_method(TracedBox(), calls)),
        "unsampled_function": ({"sampler": "always_off"}, lambda: time_function(traced, calls)),
    }
    if otel_available():
        variants["sampled_otel_context"] = (
            {"sampler": "always_on", "otel_context": True},
            lambda: time_function(traced, calls),
        )
    samples = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (settings, run) in variants.items():
            if settings is not None:
                callspan.configure(**queue, **settings)
            samples[name].append(run())
    median = {name: statistics.median(values) for name, values in samples.items()}
    cprofile_overhead = median["cprofile"] - median["plain_function"]
    rows = []
    for name, ns in median.items():
        base = median["plain_method" if "method" in name else "plain_function"]
        overhead = ns - base if name not in ("plain_function", "plain_method") else 0.0
        rows.append(
            {
                "name": name,
                "ns_per_call": round(ns, 1),
                "overhead_ns": round(overhead, 1),
                "ratio_to_cprofile": round(overhead / cprofile_overhead, 2),
            }
        )
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"CPython {version}: median of {rounds} rounds x {calls} calls")
    for row in rows:
        print(
            f"  {row['name']:24s} {row['ns_per_call']:8.1f} ns/call  "
            f"overhead {row['overhead_ns']:7.1f} ns  {row['ratio_to_cprofile']:5.2f} x cProfile"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"python": version, "smoke": args.smoke, "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
