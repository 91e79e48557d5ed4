"""Memory with the receiver down: 10 million sampled calls must not grow RSS by more than 64 MiB.

callspan is configured (sampler ``always_on``, default queue and batch sizes) to export over
OTLP/gRPC to a 127.0.0.1 port nothing listens on. After a warm-up that starts the exporter
thread, the script makes ``--calls`` traced calls from one thread, reading the current RSS
(VmRSS) after every tenth of them, and then reports the growth from the start, the peak (VmHWM,
the high-water mark of the whole process), the drop counters from ``callspan.stats()`` (every
span must be accounted for: exported + dropped + queued == sampled), and how long
``callspan.shutdown()`` took with the collector unreachable.

    python benches/memory.py [--smoke] [--json PATH] [--calls N]
"""

from __future__ import annotations

import gc
import sys
import time
from itertools import repeat

import benchkit

benchkit.clean_otel_env()

import callspan  # noqa: E402  (after the environment is cleaned)
from rotel import free_port  # noqa: E402  (tests/rotel.py)

LIMIT_MIB = 64
SHUTDOWN_TIMEOUT_S = 5.0


@callspan.trace
def work(x):
    return x


def main(argv: list[str] | None = None) -> int:
    parser = benchkit.parser(__doc__.split("\n\n", 1)[0])
    parser.add_argument("--calls", type=int, help="traced calls (default 10,000,000)")
    args = parser.parse_args(argv)
    calls = args.calls or (200_000 if args.smoke else 10_000_000)

    machine = benchkit.machine()
    closed_port = free_port()  # bound and released: nothing listens there
    endpoint = f"http://127.0.0.1:{closed_port}"
    callspan.configure(sampler="always_on", endpoint=endpoint)

    for _ in repeat(None, 10_000):  # starts the exporter thread and its runtime
        work(1)
    time.sleep(0.5)
    gc.collect()
    rss_start = benchkit.rss_bytes()
    peak_before = benchkit.peak_rss_bytes()  # imports, the exporter's start: not the calls
    samples = []
    step = max(1, calls // 10)
    done = 0
    started = time.monotonic()
    while done < calls:
        n = min(step, calls - done)
        for _ in repeat(None, n):
            work(1)
        done += n
        samples.append(
            {
                "calls": done,
                "seconds": time.monotonic() - started,
                "rss_mib": benchkit.rss_bytes() / benchkit.MIB,
            }
        )
    elapsed = time.monotonic() - started
    gc.collect()
    rss_end = benchkit.rss_bytes()
    stats = callspan.stats()
    shutdown_started = time.monotonic()
    shutdown_ok = callspan.shutdown(SHUTDOWN_TIMEOUT_S)
    shutdown_s = time.monotonic() - shutdown_started
    after_shutdown = callspan.stats()
    peak = benchkit.peak_rss_bytes()

    growth_mib = (rss_end - rss_start) / benchkit.MIB
    max_sampled_growth_mib = max(s["rss_mib"] for s in samples) - rss_start / benchkit.MIB
    accounted = (
        after_shutdown["spans_exported"]
        + after_shutdown["spans_dropped"]
        + after_shutdown["queue_len"]
    )
    result = {
        "benchmark": "memory",
        "smoke": args.smoke,
        "machine": machine,
        "settings": {
            "calls": calls,
            "endpoint": endpoint + " (closed)",
            "callspan": "sampler always_on, otherwise defaults (queue 2048, batch 512)",
        },
        "calls": calls,
        "seconds": elapsed,
        "calls_per_s": calls / elapsed,
        "rss_start_mib": rss_start / benchkit.MIB,
        "rss_end_mib": rss_end / benchkit.MIB,
        "rss_growth_mib": growth_mib,
        "max_sampled_rss_growth_mib": max_sampled_growth_mib,
        "peak_rss_mib": peak / benchkit.MIB,
        "peak_rss_before_calls_mib": peak_before / benchkit.MIB,
        "peak_grew_during_calls": peak > peak_before,
        "rss_samples": samples,
        "stats_before_shutdown": stats,
        "stats_after_shutdown": after_shutdown,
        "all_spans_accounted": accounted == after_shutdown["spans_sampled"],
        "shutdown_s": shutdown_s,
        "shutdown_ok": shutdown_ok,
        "targets": [
            {
                "target": f"receiver down, {calls:,} calls: RSS within {LIMIT_MIB} MiB of start",
                "measured": max(growth_mib, max_sampled_growth_mib),
                "limit": LIMIT_MIB,
                "met": max(growth_mib, max_sampled_growth_mib) <= LIMIT_MIB,
            },
            {
                "target": "every dropped span counted (exported + dropped + queued == sampled)",
                "measured": accounted,
                "limit": after_shutdown["spans_sampled"],
                "met": accounted == after_shutdown["spans_sampled"],
            },
        ],
    }

    print(
        f"callspan memory benchmark (receiver down): Python {machine['python']}, "
        f"{calls:,} calls in {elapsed:.1f} s"
        + (" (SMOKE: numbers mean nothing)" if args.smoke else "")
    )
    benchkit.print_table(
        ["calls", "seconds", "RSS MiB"],
        [[s["calls"], s["seconds"], s["rss_mib"]] for s in samples],
    )
    print(
        f"RSS start {result['rss_start_mib']:.1f} MiB, end {result['rss_end_mib']:.1f} MiB "
        f"(growth {growth_mib:+.1f} MiB), peak (VmHWM) {result['peak_rss_mib']:.1f} MiB "
        f"({result['peak_rss_before_calls_mib']:.1f} MiB before the calls)"
    )
    print(f"stats after shutdown: {after_shutdown}")
    print(f"shutdown with the receiver down took {shutdown_s:.2f} s (ok={shutdown_ok})")
    benchkit.print_targets(result["targets"])
    benchkit.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
