"""Profile-hook mode next to the profilers and tracers people run instead, in one process.

Part 1, per call: every row times the same trivial callee, ``work(x) -> x``, called N times in a
tight loop (``time.perf_counter_ns`` around the whole loop), in interleaved rounds (each round
measures every row once, in an order rotated by one per round), and reports the median ns per
call and the median overhead over ``undecorated`` in the same round. Rows:

* ``undecorated``: the plain function; the baseline.
* ``cprofile``, ``yappi`` (its default CPU clock), ``viztracer`` (records every call in its
  ring buffer; the buffer is cleared, not saved, after each loop).
* ``hook_matching_nothing``: ``callspan.start_profile(include=["no_such_module.*"])``: the hook is
  on, ``work`` does not match (3.12+: its PY_START is DISABLEd after the first call).
* ``hook_sampled`` / ``hook_always_off``: the hook with ``work`` included, sampler ``always_on``
  (spans exported to a counting OTLP receiver on 127.0.0.1) / ``always_off``.
* ``decorator_sampled``: ``@callspan.trace`` on the same function, ``always_on``.

Part 2, a mixed workload: ``_pydecimal`` (the standard library's pure-Python decimal: call-heavy,
a dozen Python calls per operation) driven by two functions of this module; the hook includes
only this module (``__main__``), so only those calls become spans and every ``_pydecimal`` call
passes the hook unmatched. Reported as total wall time per row and its ratio to cProfile's.

    python benches/hook.py [--smoke] [--json PATH] [--rounds R] [--target-ms T]
"""

from __future__ import annotations

import _pydecimal
import cProfile
import gc
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Callable

import benchkit

benchkit.clean_otel_env()

import callspan  # noqa: E402

# hook_matching_nothing warns (by design) at each stop that its glob matched nothing.
logging.getLogger("callspan").setLevel(logging.ERROR)
import yappi  # noqa: E402
from counting_receiver import CountingReceiver  # noqa: E402
from viztracer import VizTracer  # noqa: E402

perf_counter_ns = time.perf_counter_ns
QUEUE = 2**20


def work(x):
    return x


def decorated_work(x):
    return x


traced_work = callspan.trace(decorated_work)


def time_calls(fn: Callable[[Any], Any], n: int) -> int:
    t0 = perf_counter_ns()
    for _ in repeat(None, n):
        fn(1)
    return perf_counter_ns() - t0


def _nothing() -> None:
    pass


@dataclass
class Row:
    name: str
    timed: Callable[[int], int]
    enter: Callable[[], None] = _nothing
    leave: Callable[[], None] = _nothing
    n: int = 0
    samples: list[float] = field(default_factory=list)

    def measure(self, n: int) -> float:
        self.enter()
        try:
            return self.timed(n) / n
        finally:
            self.leave()


class Sampler:
    """Switches callspan's sampler between timed loops, never inside one."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.current: str | None = None

    def use(self, sampler: str) -> None:
        if self.current != sampler:
            callspan.configure(sampler=sampler, endpoint=self.endpoint, max_queue_size=QUEUE)
            self.current = sampler
            traced_work(0)  # starts the exporter outside the timed loop
            callspan.flush(30.0)


def build_rows(sampler: Sampler) -> list[Row]:
    profiler: list[Any] = []
    me = __name__

    def cprofile_enter() -> None:
        profiler[:] = [cProfile.Profile()]
        profiler[0].enable()

    def yappi_leave() -> None:
        yappi.stop()
        yappi.clear_stats()

    viz = VizTracer(tracer_entries=2_000_000, verbose=0)

    def viz_leave() -> None:
        viz.stop()
        viz.clear()

    def hook(include: str, sampler_name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        def enter() -> None:
            sampler.use(sampler_name)
            callspan.start_profile([include])

        def leave() -> None:
            callspan.stop_profile()
            callspan.flush(30.0)

        return enter, leave

    def plain(n: int) -> int:
        return time_calls(work, n)

    nothing_enter, nothing_leave = hook("no_such_module.*", "always_on")
    sampled_enter, sampled_leave = hook(f"{me}.work", "always_on")
    off_enter, off_leave = hook(f"{me}.work", "always_off")
    return [
        Row("undecorated", plain),
        Row("cprofile", plain, cprofile_enter, lambda: profiler[0].disable()),
        Row("yappi", plain, yappi.start, yappi_leave),
        Row("viztracer", plain, viz.start, viz_leave),
        Row("hook_matching_nothing", plain, nothing_enter, nothing_leave),
        Row("hook_sampled", plain, sampled_enter, sampled_leave),
        Row("hook_always_off", plain, off_enter, off_leave),
        Row(
            "decorator_sampled",
            lambda n: time_calls(traced_work, n),
            lambda: sampler.use("always_on"),
            lambda: callspan.flush(30.0),
        ),
    ]


def calibrate(row: Row, target_ns: float) -> int:
    n = 64
    while True:
        per_call = row.measure(n)
        if per_call * n >= target_ns / 8 or n >= 20_000_000:
            return max(16, math.ceil(target_ns / per_call))
        n *= 4


# -- part 2: the mixed workload --------------------------------------------------------------


def compound(principal, rate, years):
    value = principal
    for _ in range(years):
        value = value + value * rate  # the call-heavy part: _pydecimal arithmetic
    return value


def portfolio(n):
    context = _pydecimal.Context(prec=28)
    _pydecimal.setcontext(context)
    rate = _pydecimal.Decimal("0.0375")
    return sum(
        (compound(_pydecimal.Decimal(i), rate, 12) for i in range(1, n)), _pydecimal.Decimal(0)
    )


def mixed_rows(
    sampler: Sampler, n: int
) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    profiler: list[Any] = []

    def cprofile_enter() -> None:
        profiler[:] = [cProfile.Profile()]
        profiler[0].enable()

    def hook_enter() -> None:
        sampler.use("always_on")
        callspan.start_profile([__name__])

    def hook_leave() -> None:
        callspan.stop_profile()
        callspan.flush(30.0)

    return [
        ("undecorated", _nothing, _nothing),
        ("cprofile", cprofile_enter, lambda: profiler[0].disable()),
        ("hook_one_module", hook_enter, hook_leave),
    ]


def run_mixed(sampler: Sampler, rounds: int, n: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    rows = mixed_rows(sampler, n)
    for round_index in range(rounds):
        shift = round_index % len(rows)
        for name, enter, leave in rows[shift:] + rows[:shift]:
            enter()
            t0 = perf_counter_ns()
            portfolio(n)
            elapsed = perf_counter_ns() - t0
            leave()
            samples.setdefault(name, []).append(elapsed / 1e6)
    return samples


def main() -> None:
    p = benchkit.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--target-ms", type=float, default=60.0)
    p.add_argument("--mixed-n", type=int, default=400)
    args = p.parse_args()
    if args.smoke:
        args.rounds, args.target_ms, args.mixed_n = 2, 2.0, 20
    machine = benchkit.machine()
    with CountingReceiver() as receiver:
        sampler = Sampler(receiver.endpoint)
        rows = build_rows(sampler)
        target_ns = args.target_ms * 1e6
        for row in rows:
            row.n = calibrate(row, target_ns)
        gc.collect()
        for round_index in range(args.rounds):
            shift = round_index % len(rows)
            for row in rows[shift:] + rows[:shift]:
                row.samples.append(row.measure(row.n))
        mixed = run_mixed(sampler, args.rounds, args.mixed_n)
        callspan.shutdown(30.0)
        exported = receiver.spans
    base = rows[0].samples
    summary = []
    for row in rows:
        overhead = benchkit.median([a - b for a, b in zip(row.samples, base)])
        summary.append(
            {"row": row.name, "ns_per_call": benchkit.median(row.samples), "overhead_ns": overhead}
        )
    by_row = {r["row"]: r for r in summary}
    cprofile_overhead = by_row["cprofile"]["overhead_ns"]
    for r in summary:
        r["vs_cprofile_overhead"] = (
            r["overhead_ns"] / cprofile_overhead if cprofile_overhead else None
        )
    mixed_summary = {name: benchkit.median(ms) for name, ms in mixed.items()}
    print(f"CPython {sys.version.split()[0]}: per call ({args.rounds} rounds)")
    benchkit.print_table(
        ["row", "ns/call", "overhead ns", "x cProfile overhead"],
        [
            [r["row"], r["ns_per_call"], r["overhead_ns"], r["vs_cprofile_overhead"]]
            for r in summary
        ],
    )
    print(f"\nmixed workload: _pydecimal driven by this module, n={args.mixed_n}")
    benchkit.print_table(
        ["row", "wall ms", "x cProfile"],
        [[name, ms, ms / mixed_summary["cprofile"]] for name, ms in mixed_summary.items()],
    )
    sampled = by_row["hook_sampled"]["overhead_ns"]
    decorator = by_row["decorator_sampled"]["overhead_ns"]
    nothing = by_row["hook_matching_nothing"]["overhead_ns"]
    limit = 0.05 * cprofile_overhead if sys.version_info >= (3, 12) else cprofile_overhead
    targets = [
        {
            "target": "hook matching nothing vs cProfile overhead",
            "measured": round(nothing, 1),
            "limit": round(limit, 1),
            "met": nothing <= limit,
        },
        {
            "target": "hook-matched call vs sampled decorator + 20 %",
            "measured": round(sampled, 1),
            "limit": round(decorator * 1.2, 1),
            "met": sampled <= decorator * 1.2,
        },
    ]
    print()
    benchkit.print_targets(targets)
    benchkit.write_json(
        args.json,
        {
            "benchmark": "hook",
            "smoke": args.smoke,
            "machine": machine,
            "rows": summary,
            "mixed_workload_ms": mixed_summary,
            "mixed_samples_ms": mixed,
            "spans_exported": exported,
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
