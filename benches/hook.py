"""Profile-hook mode next to the profilers and tracers people run instead, in one process.

Part 1, per call: every row times the same trivial callee, ``work(x) -> x``, called N times in a
tight loop (``benchkit.time_function_calls``), in interleaved rounds (each round measures every
row once, in an order rotated by one per round), and reports the median ns per call and the
median overhead over ``undecorated`` in the same round. Rows:

* ``undecorated``: the plain function; the baseline.
* ``cprofile``, ``yappi`` (its default CPU clock), ``viztracer`` (records every call in its
  ring buffer; the buffer is cleared, not saved, after each loop).
* ``hook_matching_nothing``: ``callspan.start_profile(include=["no_such_module.*"])``: the hook is
  on, ``work`` does not match (3.12+: its PY_START is DISABLEd after the first call; 3.9-3.11:
  each of its frames reads the code's decision and is evaluated as usual, which on 3.11 also
  means CPython no longer inlines the call).
* ``hook_sampled`` / ``hook_always_off``: the hook with ``work`` included, sampler ``always_on``
  (spans exported to a counting OTLP receiver on 127.0.0.1) / ``always_off``.
* ``decorator_sampled``: ``@callspan.trace`` on the same function, ``always_on``.

Part 2, a mixed workload: ``_pydecimal`` (the standard library's pure-Python decimal: call-heavy,
a dozen Python calls per operation) driven by two functions of this module; the hook includes
only this module (``__main__``), so only those calls become spans and every ``_pydecimal`` call
passes the hook unmatched. Reported as total wall time per row and its ratio to cProfile's.

``--instructions`` counts instead of timing: each row of part 1 runs in a child process under
valgrind's callgrind (``benchkit.instructions_per_call``: main-thread instructions per call,
N and 2N calls, spans to a file), so the ratios of the targets can be read from one run on a
loaded machine. Timings need a quiet machine.

    python benches/hook.py [--smoke] [--json PATH] [--rounds R] [--target-ms T]
    python benches/hook.py --instructions [--calls N] [--rows ROW ...] [--json PATH]
"""

from __future__ import annotations

import _pydecimal
import gc
import logging
import os
import sys
import tempfile
import threading
from typing import Any, Callable

import benchkit
from benchkit import Row, time_function_calls

benchkit.clean_otel_env()

import callspan  # noqa: E402

# hook_matching_nothing warns (by design) at each stop that its glob matched nothing.
logging.getLogger("callspan").setLevel(logging.ERROR)

QUEUE = 2**20
BASELINE = "undecorated"
ROW_NAMES = (
    "undecorated",
    "cprofile",
    "yappi",
    "viztracer",
    "hook_matching_nothing",
    "hook_sampled",
    "hook_always_off",
    "decorator_sampled",
)
# The rows the targets are computed from (with the baseline, "undecorated").
TARGET_ROWS = (
    "undecorated",
    "cprofile",
    "hook_matching_nothing",
    "hook_sampled",
    "decorator_sampled",
)


def work(x):
    return x


def decorated_work(x):
    return x


traced_work = callspan.trace(decorated_work)


class Sampler:
    """Switches callspan's sampler between timed loops, never inside one; ``export`` are the
    exporter settings of ``callspan.configure`` (an endpoint, or a file)."""

    def __init__(self, **export: Any):
        self.export = export
        self.current: str | None = None

    def use(self, sampler: str) -> None:
        if self.current != sampler:
            callspan.configure(sampler=sampler, max_queue_size=QUEUE, **self.export)
            self.current = sampler
            traced_work(0)  # starts the exporter outside the timed loop
            callspan.flush(30.0)


def hook_around(
    sampler: Sampler, include: str, sampler_name: str
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(enter, leave) running callspan's profile hook with ``include`` around a timed loop."""

    def enter() -> None:
        sampler.use(sampler_name)
        callspan.start_profile([include])

    def leave() -> None:
        callspan.stop_profile()
        callspan.flush(30.0)

    return enter, leave


def build_rows(sampler: Sampler) -> list[Row]:
    me = __name__
    viz: list[Any] = []

    def viz_enter() -> None:
        if not viz:
            # Made on first use: a VizTracer holds the profile hook from its creation on.
            from viztracer import VizTracer

            viz.append(VizTracer(tracer_entries=2_000_000, verbose=0))
        viz[0].start()

    def viz_leave() -> None:
        viz[0].stop()
        viz[0].clear()
        # VizTracer.stop() leaves its hook for new threads in threading.setprofile (3.9-3.11):
        # threads the next rows start must not run under it.
        threading.setprofile(None)  # type: ignore[arg-type]

    def plain(name: str, around: tuple[Callable[[], None], Callable[[], None]]) -> Row:
        return Row(name, BASELINE, lambda n: time_function_calls(work, n), *around)

    rows = [
        plain("undecorated", (benchkit.nothing, benchkit.nothing)),
        plain("cprofile", benchkit.cprofile_around()),
        plain("yappi", benchkit.yappi_around()),
        plain("viztracer", (viz_enter, viz_leave)),
        plain("hook_matching_nothing", hook_around(sampler, "no_such_module.*", "always_on")),
        plain("hook_sampled", hook_around(sampler, f"{me}.work", "always_on")),
        plain("hook_always_off", hook_around(sampler, f"{me}.work", "always_off")),
        Row(
            "decorator_sampled",
            BASELINE,
            lambda n: time_function_calls(traced_work, n),
            lambda: sampler.use("always_on"),
            lambda: callspan.flush(30.0),
        ),
    ]
    assert tuple(row.name for row in rows) == ROW_NAMES
    return rows


def evaluate_targets(overhead: dict[str, float], unit: str) -> list[dict[str, Any]]:
    """The issue's targets over per-call overheads (ns or instructions) by row."""
    cprofile = overhead["cprofile"]
    sampled = overhead["hook_sampled"]
    decorator = overhead["decorator_sampled"]
    nothing = overhead["hook_matching_nothing"]
    limit = 0.05 * cprofile if sys.version_info >= (3, 12) else cprofile
    return [
        {
            "target": "hook matching nothing vs cProfile overhead",
            "measured": round(nothing, 1),
            "limit": round(limit, 1),
            "met": nothing <= limit,
            "unit": unit,
        },
        {
            "target": "hook-matched call vs sampled decorator + 20 %",
            "measured": round(sampled, 1),
            "limit": round(decorator * 1.2, 1),
            "met": sampled <= decorator * 1.2,
            "unit": unit,
        },
    ]


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


def mixed_rows(sampler: Sampler, n: int) -> list[Row]:
    def timed(_calls: int) -> int:
        t0 = benchkit.perf_counter_ns()
        portfolio(n)
        return benchkit.perf_counter_ns() - t0

    return [
        Row("undecorated", BASELINE, timed),
        Row("cprofile", BASELINE, timed, *benchkit.cprofile_around()),
        Row("hook_one_module", BASELINE, timed, *hook_around(sampler, __name__, "always_on")),
    ]


# -- the two modes -----------------------------------------------------------------------------


def timing(args: Any) -> None:
    from counting_receiver import CountingReceiver

    if args.smoke:
        args.rounds, args.target_ms, args.mixed_n = 2, 2.0, 20
    machine = benchkit.machine()
    with CountingReceiver() as receiver:
        sampler = Sampler(endpoint=receiver.endpoint)
        rows = build_rows(sampler)
        target_ns = args.target_ms * 1e6
        for row in rows:
            row.n = benchkit.calibrate(row, target_ns, max_calls=20_000_000)
        gc.collect()
        benchkit.interleaved_rounds(rows, args.rounds)
        mixed = mixed_rows(sampler, args.mixed_n)
        for row in mixed:
            row.n = 1
        benchkit.interleaved_rounds(mixed, args.rounds)
        callspan.shutdown(30.0)
        exported = receiver.spans
    overhead = {row.name: benchkit.overhead_ns(row, rows) for row in rows}
    summary = [
        {
            "row": row.name,
            "ns_per_call": benchkit.median(row.samples),
            "overhead_ns": overhead[row.name],
            "vs_cprofile_overhead": ratio(overhead[row.name], overhead["cprofile"]),
        }
        for row in rows
    ]
    mixed_summary = {row.name: benchkit.median(row.samples) / 1e6 for row in mixed}
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
    targets = evaluate_targets(overhead, "ns")
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
            "mixed_samples_ms": {row.name: [s / 1e6 for s in row.samples] for row in mixed},
            "spans_exported": exported,
            "targets": targets,
        },
    )


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def instructions(args: Any) -> None:
    calls = 2_000 if args.smoke else args.calls
    per_call = {}
    with tempfile.TemporaryDirectory() as workdir:
        spans = os.path.join(workdir, "spans.jsonl")
        rows = args.rows or ROW_NAMES
        for name in rows if BASELINE in rows else [BASELINE, *rows]:
            child = [os.path.abspath(__file__), "--child", name, "--spans", spans]
            per_call[name] = benchkit.instructions_per_call(child, calls)
    overhead = {name: ir - per_call[BASELINE] for name, ir in per_call.items()}
    targets = (
        evaluate_targets(overhead, "instructions") if set(TARGET_ROWS) <= set(overhead) else []
    )
    summary = [
        {
            "row": name,
            "instructions_per_call": round(ir, 1),
            "overhead_instructions": round(overhead[name], 1),
            "vs_cprofile_overhead": ratio(overhead[name], overhead.get("cprofile", 0)),
        }
        for name, ir in per_call.items()
    ]
    print(f"CPython {sys.version.split()[0]}: main-thread instructions per call (callgrind)")
    benchkit.print_table(
        ["row", "Ir/call", "overhead Ir", "x cProfile overhead"],
        [
            [r["row"], r["instructions_per_call"], r["overhead_instructions"]]
            + [r["vs_cprofile_overhead"]]
            for r in summary
        ],
    )
    print()
    benchkit.print_targets(targets)
    benchkit.write_json(
        args.json,
        {
            "benchmark": "hook_instructions",
            "smoke": args.smoke,
            "machine": benchkit.machine(),
            "calls": calls,
            "rows": summary,
            "targets": targets,
        },
    )


def child(args: Any) -> None:
    """One row under callgrind: warm-up calls, then ``--calls`` calls, spans to ``--spans``."""
    sampler = Sampler(exporter="file", file=args.spans)
    sampler.use("always_on")
    (row,) = [row for row in build_rows(sampler) if row.name == args.child]
    row.enter()
    row.timed(1000)  # caches fill, code objects are decided, call sites specialise
    row.timed(args.calls)
    row.leave()
    callspan.shutdown(30.0)


def main() -> None:
    p = benchkit.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--target-ms", type=float, default=60.0)
    p.add_argument("--mixed-n", type=int, default=400)
    p.add_argument(
        "--instructions", action="store_true", help="count instructions per call (callgrind)"
    )
    p.add_argument("--calls", type=int, default=20_000, help="--instructions: calls per run")
    p.add_argument("--rows", nargs="+", choices=ROW_NAMES, help="--instructions: only these rows")
    p.add_argument("--child", choices=ROW_NAMES, help="(internal) one row under callgrind")
    p.add_argument("--spans", help="(internal) the child's span file")
    args = p.parse_args()
    if args.child:
        child(args)
    elif args.instructions:
        instructions(args)
    else:
        timing(args)


if __name__ == "__main__":
    main()
