"""Per-call overhead of callspan next to the alternatives, in one process, in interleaved rounds.

Every row times the same trivial callee, ``work(x) -> x``, called N times in a tight ``for``
loop (``time.perf_counter_ns`` around the whole loop, nothing subtracted), and reports ns per
call. Rows:

* ``plain_function`` / ``plain_method``: the undecorated callee; the baselines.
* ``c_forwarding_wrapper``: ``functools.partial(work)``, CPython's own C-level callable that
  only forwards the call: what CPython charges any C wrapper (callspan's included) for calling a
  Python function from C, a frame set-up the undecorated loop's inlined call never pays. It is
  the floor under the ``callspan_unsampled_always_off`` row.
* ``callspan_sampled_function`` / ``_method``: ``@callspan.trace``, sampler ``always_on``.
* ``callspan_unsampled_always_off``: ``@callspan.trace``, sampler ``always_off``.
* ``callspan_sampled_function_counting`` / ``callspan_unsampled_always_off_counting``: the same
  two with every call counted per caller edge (``metrics_exporter="otlp"``, to the same
  collector); the rows above count nothing (``metrics_exporter="none"``, the default). What
  counting adds is measured apart from the rounds, in ``--pairs`` pairs of adjacent short loops
  (``--pair-ms``) of the row with and without counting, the order swapped every pair: the
  fastest loop with counting minus the fastest without (``timeit``'s rule: the fastest is the
  least disturbed, and a slow phase of the host inflates a difference in ns with everything
  else), and the median of the per-pair differences with its quartiles beside it. Rows timed in
  a round are seconds apart, and the host's drift between them is larger than the ~13 ns this
  measures (the JSON keeps the per-round estimate too, as ``counting_adds_by_round_ns``).
* ``callspan_traceidratio_0.01``: sampler ``traceidratio`` at 0.01 (1 % of calls sampled).
* ``otel_sdk_decorator``: ``@tracer.start_as_current_span(...)`` from the OpenTelemetry Python
  SDK, BatchSpanProcessor + OTLP/gRPC exporter (default settings).
* ``otel_sdk_decorator_caller_attrs``: the same, plus the caller's function, file, line and
  class added by hand through ``sys._getframe(1)``: what callspan records, done in Python.
* ``inspect_stack_decorator``: the ``inspect.stack()[1]`` decorator people write by hand.
* ``cprofile``: the plain function with ``cProfile`` enabled around the loop.
* ``yappi``: the plain function with ``yappi`` running (its default CPU clock).

Rounds are interleaved: each round measures every row once, in an order rotated by one per
round, and the table reports medians over rounds. Overhead is the median over rounds of
(row - its baseline in the same round), the baseline being ``plain_method`` for the method rows
and ``plain_function`` for everything else; the ratio column divides it by cProfile's overhead.
callspan's sampler is switched with ``callspan.configure()`` between timed loops, never inside
one. After each timed loop of an exporting row its queue is flushed (outside the timing), so one
row's backlog does not run during the next row. The exporting rows (callspan sampled, OTel SDK)
send to a live collector: ``rotel`` from PyPI with its blackhole exporter, on 127.0.0.1.

callspan's queue is made large enough (``--callspan-queue``, 2**21 records) for one timed loop's
spans: a tight loop makes spans far faster than any exporter ships them, and with the default
2048-record queue nearly every "sampled" call of the loop would measure the queue-full drop
path instead. Each row's counters (sampled, dropped) are in the JSON.

    python benches/overhead.py [--smoke] [--json PATH] [--rounds R] [--target-ms T]
                               [--pairs P] [--pair-ms T] [--callspan-queue N]
"""

from __future__ import annotations

import functools
import gc
import inspect
import math
import os
import sys
import time
from typing import Any, Callable

import benchkit
from benchkit import Row, time_function_calls, time_method_calls

benchkit.clean_otel_env()

import callspan  # noqa: E402  (after the environment is cleaned: config is read on first use)
import yappi  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from otel_sdk import CountingExporter, quiet_queue_full_log  # noqa: E402
from rotel import RotelAgent  # noqa: E402  (tests/rotel.py: the collector fixture)

# callspan's queue for this benchmark: 2**21 records (192 MiB at most; its segments are taken as
# spans queue, not preallocated) hold one timed loop's sampled spans, so that the sampled rows
# measure spans that are queued, not the queue-full drop path a default queue falls into within
# milliseconds of a tight loop. 2**20 was too few on 3.11, where a 100 ms sampled loop makes
# ~1.4 million spans.
DEFAULT_QUEUE = 1 << 21
SMOKE_QUEUE = 1 << 16

# The pause after each configure() before a timed loop (CallspanSampler.use).
SETTLE_AFTER_CONFIGURE_S = 0.02

# A row that counts every call per caller edge: the row of this name without the suffix, plus
# counting.
COUNTING_SUFFIX = "_counting"

ROW_NAMES = (
    "plain_function",
    "plain_method",
    "c_forwarding_wrapper",
    "callspan_sampled_function",
    "callspan_sampled_method",
    "callspan_unsampled_always_off",
    "callspan_sampled_function_counting",
    "callspan_unsampled_always_off_counting",
    "callspan_traceidratio_0.01",
    "otel_sdk_decorator",
    "otel_sdk_decorator_caller_attrs",
    "inspect_stack_decorator",
    "cprofile",
    "yappi",
)

# -- the callees ----------------------------------------------------------------------------------


def work(x):
    return x


class Worker:
    def work(self, x):
        return x


def callspan_callees() -> tuple[Any, Any]:
    """The traced function and a traced-method object, decorated after the first configure()
    (in builds before fe9acc8, decorating created the pipeline and fixed its queue size)."""

    @callspan.trace
    def work(x):
        return x

    class TracedWorker:
        @callspan.trace
        def work(self, x):
            return x

    return work, TracedWorker()


def inspect_stack_trace(func):
    """The hand-written caller decorator: ``inspect.stack()[1]`` on every call."""
    last_caller: list[Any] = [None]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        caller = inspect.stack()[1]
        last_caller[0] = (caller.function, caller.filename, caller.lineno)
        return func(*args, **kwargs)

    return wrapper


@inspect_stack_trace
def inspect_work(x):
    return x


def otel_trace_with_caller(tracer):
    """An OTel SDK decorator that adds callspan's caller attributes by hand."""

    def decorate(func):
        name = func.__qualname__

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            frame = sys._getframe(1)
            code = frame.f_code
            qualname = getattr(code, "co_qualname", code.co_name)
            attributes = {
                "caller.function.name": f"{frame.f_globals.get('__name__')}.{qualname}",
                "caller.file.path": code.co_filename,
                "caller.line.number": frame.f_lineno,
            }
            if code.co_argcount and code.co_varnames[0] in ("self", "cls"):
                first = frame.f_locals[code.co_varnames[0]]
                cls = first if isinstance(first, type) else type(first)
                attributes["caller.class.name"] = f"{cls.__module__}.{cls.__qualname__}"
            with tracer.start_as_current_span(name, attributes=attributes):
                return func(*args, **kwargs)

        return wrapper

    return decorate


# -- rows ----------------------------------------------------------------------------------------


class CallspanSampler:
    """Switches callspan's sampler between timed loops (configure() restarts its exporter)."""

    def __init__(self, endpoint: str, queue_size: int):
        self.endpoint = endpoint
        self.queue_size = queue_size
        # The counting rows' metrics go to the same collector (``endpoint=`` is the traces').
        os.environ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = endpoint
        self.current: tuple[str, float | None, bool] | None = None
        self.use("always_off")
        self.traced_function, self.traced_worker = callspan_callees()

    def use(self, sampler: str, arg: float | None = None, counting: bool = False) -> None:
        if self.current == (sampler, arg, counting):
            return
        callspan.configure(
            sampler=sampler,
            sampler_arg=arg,
            endpoint=self.endpoint,
            max_queue_size=self.queue_size,
            metrics_exporter="otlp" if counting else "none",
        )
        assert callspan._callspan.counting()[0] == counting
        self.current = (sampler, arg, counting)
        if hasattr(self, "traced_function") and sampler != "always_off":
            # The exporter starts with the first sampled span after configure(); make that
            # span here, outside the timed loop, so no row pays for a thread start (with
            # traceidratio that takes about 1/ratio calls).
            sampled = callspan.stats()["spans_sampled"]
            for _ in range(1_000_000):
                self.traced_function(0)
                if callspan.stats()["spans_sampled"] > sampled:
                    break
            callspan.flush(30.0)
        # configure() ended the previous exporters after their last exports and opened new
        # connections; their threads, and the collector's side of the connections, finish
        # that work during the next few milliseconds. Measured: a 2 ms sampled loop right
        # after a configure() that stopped the metrics exporter ran ~50 ns per call slower
        # than one after a configure() that started it, and the difference went with a 5-20 ms
        # pause. The pause keeps that work out of the timed loop that follows.
        time.sleep(SETTLE_AFTER_CONFIGURE_S)


def build_rows(endpoint: str, queue_size: int) -> tuple[list[Row], Callable[[], dict[str, int]]]:
    """All rows, and a function that shuts down what they started."""
    sampler = CallspanSampler(endpoint, queue_size)

    quiet_queue_full_log()
    exporter = CountingExporter(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    provider = TracerProvider(resource=Resource.create({"service.name": "callspan-bench"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("callspan-bench")
    otel_work = tracer.start_as_current_span("work")(work)
    otel_caller_work = otel_trace_with_caller(tracer)(work)
    otel_calls = {"made": 0}

    def flush_otel() -> None:
        provider.force_flush(30_000)

    def callspan_row(name, fn_or_obj, sampler_name, arg=None, method=False, counting=False) -> Row:
        timed = (
            (lambda n: time_method_calls(fn_or_obj, n))
            if method
            else (lambda n: time_function_calls(fn_or_obj, n))
        )
        return Row(
            name,
            "plain_method" if method else "plain_function",
            timed,
            enter=lambda: sampler.use(sampler_name, arg, counting),
            leave=lambda: callspan.flush(30.0),
        )

    def otel_row(name, fn) -> Row:
        def timed(n: int) -> int:
            otel_calls["made"] += n
            return time_function_calls(fn, n)

        return Row(name, "plain_function", timed, leave=flush_otel)

    worker = Worker()
    forwarding_work = functools.partial(work)
    cs_work, traced_worker = sampler.traced_function, sampler.traced_worker
    rows = [
        Row("plain_function", "plain_function", lambda n: time_function_calls(work, n)),
        Row("plain_method", "plain_method", lambda n: time_method_calls(worker, n)),
        Row(
            "c_forwarding_wrapper",
            "plain_function",
            lambda n: time_function_calls(forwarding_work, n),
        ),
        callspan_row("callspan_sampled_function", cs_work, "always_on"),
        callspan_row("callspan_sampled_method", traced_worker, "always_on", method=True),
        callspan_row("callspan_unsampled_always_off", cs_work, "always_off"),
        callspan_row("callspan_sampled_function_counting", cs_work, "always_on", counting=True),
        callspan_row(
            "callspan_unsampled_always_off_counting", cs_work, "always_off", counting=True
        ),
        callspan_row("callspan_traceidratio_0.01", cs_work, "traceidratio", 0.01),
        otel_row("otel_sdk_decorator", otel_work),
        otel_row("otel_sdk_decorator_caller_attrs", otel_caller_work),
        Row(
            "inspect_stack_decorator",
            "plain_function",
            lambda n: time_function_calls(inspect_work, n),
        ),
        Row(
            "cprofile",
            "plain_function",
            lambda n: time_function_calls(work, n),
            *benchkit.cprofile_around(),
        ),
        Row(
            "yappi",
            "plain_function",
            lambda n: time_function_calls(work, n),
            *benchkit.yappi_around(),
        ),
    ]
    assert tuple(row.name for row in rows) == ROW_NAMES

    def close() -> dict[str, int]:
        """Shuts both SDKs down; returns the OTel SDK's span counts (both OTel rows together)."""
        provider.shutdown()
        callspan.shutdown(10.0)
        return {
            "spans_made": otel_calls["made"],
            "spans_exported": exporter.exported,
            "spans_failed": exporter.failed,
            "spans_dropped": otel_calls["made"] - exporter.exported,
        }

    return rows, close


# -- running --------------------------------------------------------------------------------------


def run(
    rounds: int, target_ms: float, pairs: int, pair_ms: float, endpoint: str, queue_size: int
) -> tuple[list[Row], dict[str, list[tuple[float, float]]], dict[str, Any]]:
    """Calibrates every row, runs the interleaved rounds, then the counting rows' pairs; returns
    the rows, each counting row's pairs (ns per call without and with counting), and the
    counters."""
    rows, close = build_rows(endpoint, queue_size)
    target_ns = target_ms * 1e6
    for row in rows:
        row.n = benchkit.calibrate(row, target_ns)
    before = callspan.stats()
    per_row_callspan: dict[str, dict[str, int]] = {}

    def counting(row: Row, measure: Callable[[], None]) -> None:
        start = callspan.stats()
        measure()
        if row.name.startswith("callspan_"):
            end = callspan.stats()
            totals = per_row_callspan.setdefault(row.name, {})
            for key in ("spans_started", "spans_sampled", "dropped_queue_full"):
                totals[key] = totals.get(key, 0) + end[key] - start[key]

    benchkit.interleaved_rounds(rows, rounds, counting)
    by_name = {row.name: row for row in rows}
    counting_pairs = {}
    for row in rows:
        if row.name.endswith(COUNTING_SUFFIX):
            n = max(16, round(row.n * pair_ms / target_ms))
            without = by_name[row.name.removesuffix(COUNTING_SUFFIX)]
            counting_pairs[row.name] = benchkit.paired_loops(without, row, pairs, n, counting)
    after = callspan.stats()
    otel_counters = close()
    for row in rows:
        if row.name in per_row_callspan:
            row.counters = per_row_callspan[row.name]
    counters = {
        "callspan": {key: after[key] - before.get(key, 0) for key in after},
        "otel_sdk": otel_counters,
    }
    return rows, counting_pairs, counters


def call_depth() -> int:
    """Frames on the stack inside the callee when the timed loops call it (inspect's cost)."""
    depth: list[int] = []
    time_function_calls(lambda _x: depth.append(len(inspect.stack(0))), 1)
    return depth[0]


def summarise(
    rows: list[Row], counting_pairs: dict[str, list[tuple[float, float]]]
) -> list[dict[str, Any]]:
    by_name = {row.name: row for row in rows}

    def overhead(row: Row) -> float:
        return benchkit.overhead_ns(row, rows)

    def counting_adds(row: Row) -> dict[str, Any]:
        """What counting adds, from the pairs: the fastest loop with counting minus the fastest
        without (the estimate the targets use), the median of the per-pair differences and their
        quartiles; and the median over rounds of (this row - the same row counting nothing in
        that round), for comparison.

        The fastest loops, as ``timeit`` advises for a time: an absolute cost in ns is inflated
        by the host's slow phases (a neighbour slowing every instruction 1.7x for seconds
        inflates a 13 ns difference measured then to 22 ns, pair or no pair), and the fastest of
        200 loops of each is the least disturbed; the pairs' median is kept beside it."""
        if not row.name.endswith(COUNTING_SUFFIX):
            return {"counting_adds_ns": None}
        pairs = counting_pairs[row.name]
        differences = [counting - without for without, counting in pairs]
        plain = by_name[row.name.removesuffix(COUNTING_SUFFIX)].samples
        return {
            "counting_adds_ns": min(counting for _, counting in pairs)
            - min(without for without, _ in pairs),
            "counting_adds_pair_median_ns": benchkit.median(differences),
            "counting_adds_quartiles_ns": benchkit.quartiles(differences),
            "counting_pairs": len(differences),
            "counting_pairs_ns_per_call": [[round(a, 2), round(b, 2)] for a, b in pairs],
            "counting_adds_by_round_ns": benchkit.median(
                [a - b for a, b in zip(row.samples, plain)]
            ),
        }

    cprofile_overhead = overhead(by_name["cprofile"])
    out = []
    for row in rows:
        row_overhead = overhead(row)
        out.append(
            {
                **counting_adds(row),
                "name": row.name,
                "baseline": row.baseline,
                "ns_per_call": benchkit.median(row.samples),
                "overhead_ns": row_overhead,
                "ratio_to_cprofile": row_overhead / cprofile_overhead
                if cprofile_overhead > 0
                else None,
                "min_ns_per_call": min(row.samples),
                "max_ns_per_call": max(row.samples),
                "calls_per_round": row.n,
                "rounds": len(row.samples),
                "samples_ns_per_call": [round(s, 2) for s in row.samples],
                "counters": row.counters,
            }
        )
    return out


def evaluate_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = {row["name"]: row for row in results}
    cp = r["cprofile"]["overhead_ns"]
    sampled_f = r["callspan_sampled_function"]["overhead_ns"]
    sampled_m = r["callspan_sampled_method"]["overhead_ns"]
    unsampled = r["callspan_unsampled_always_off"]["overhead_ns"]
    otel = r["otel_sdk_decorator"]["overhead_ns"]
    counting_sampled = r["callspan_sampled_function_counting"]["counting_adds_ns"]
    counting_unsampled = r["callspan_unsampled_always_off_counting"]["counting_adds_ns"]
    method_tolerance = 0.05  # 5 %: rounds differ by about this much on a quiet machine

    def target(name, measured, limit, met, unit=""):
        return {
            "target": name,
            "measured": measured,
            "limit": limit,
            "met": bool(met),
            "unit": unit,
        }

    return [
        target(
            "sampled function overhead <= 0.6 x cProfile's",
            sampled_f / cp,
            0.6,
            sampled_f <= 0.6 * cp,
            "x cProfile",
        ),
        target(
            "sampled method overhead <= 0.6 x cProfile's",
            sampled_m / cp,
            0.6,
            sampled_m <= 0.6 * cp,
            "x cProfile",
        ),
        target(
            "unsampled (always_off) overhead <= 0.15 x cProfile's",
            unsampled / cp,
            0.15,
            unsampled <= 0.15 * cp,
            "x cProfile",
        ),
        target(
            ">= 100 x less overhead than the OTel SDK decorator",
            otel / sampled_f if sampled_f > 0 else math.inf,
            100,
            sampled_f > 0 and otel / sampled_f >= 100,
            "OTel / callspan",
        ),
        target(
            "counting every call adds <= 20 ns per sampled call",
            counting_sampled,
            20,
            counting_sampled <= 20,
            "ns",
        ),
        target(
            "counting every call adds <= 20 ns per unsampled call",
            counting_unsampled,
            20,
            counting_unsampled <= 20,
            "ns",
        ),
        target(
            "decorated method overhead <= decorated function overhead (5 % tolerance)",
            sampled_m - sampled_f,
            method_tolerance * sampled_f,
            sampled_m <= sampled_f * (1 + method_tolerance),
            "ns method - function",
        ),
    ]


def counting_cell(row: dict[str, Any]) -> str | None:
    """The table's "counting adds" cell: fastest minus fastest; the pairs' median, quartiles."""
    if row["counting_adds_ns"] is None:
        return None
    q1, q3 = row["counting_adds_quartiles_ns"]
    median = row["counting_adds_pair_median_ns"]
    return f"{row['counting_adds_ns']:.2f}; {median:.1f} ({q1:.1f} to {q3:.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = benchkit.parser(__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 21, smoke 2)")
    parser.add_argument(
        "--target-ms", type=float, help="duration of one timed loop (default 100, smoke 2)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        help="pairs of loops with and without counting, per counting row (default 200, smoke 2)",
    )
    parser.add_argument(
        "--pair-ms", type=float, help="duration of one loop of a pair (default 5, smoke 1)"
    )
    parser.add_argument(
        "--callspan-queue",
        type=int,
        help=f"callspan max_queue_size (default {DEFAULT_QUEUE:,}, smoke {SMOKE_QUEUE:,}: "
        "one timed loop's spans fit; "
        "2048, callspan's default, measures mostly the queue-full drop path)",
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.smoke else 21)
    target_ms = args.target_ms or (2.0 if args.smoke else 100.0)
    queue = args.callspan_queue or (SMOKE_QUEUE if args.smoke else DEFAULT_QUEUE)
    pairs = args.pairs or (2 if args.smoke else 200)
    pair_ms = args.pair_ms or (1.0 if args.smoke else 5.0)

    machine = benchkit.machine()
    with RotelAgent(exporter="blackhole") as agent:
        started = time.monotonic()
        rows, counting_pairs, counters = run(
            rounds, target_ms, pairs, pair_ms, agent.grpc_endpoint, queue
        )
        elapsed = time.monotonic() - started
    gc.collect()
    results = summarise(rows, counting_pairs)
    targets = evaluate_targets(results)

    print(
        f"callspan overhead benchmark: Python {machine['python']}, {machine['cpu']} "
        f"x{machine['cpus']}, {rounds} rounds, ~{target_ms:g} ms per timed loop; counting: "
        f"{pairs} pairs of ~{pair_ms:g} ms loops"
        + (" (SMOKE: numbers mean nothing)" if args.smoke else "")
    )
    benchkit.print_table(
        [
            "row",
            "ns/call",
            "overhead ns",
            "x cProfile",
            "counting adds ns: fastest; pairs' median (quartiles)",
            "calls/round",
        ],
        [
            [
                row["name"],
                row["ns_per_call"],
                row["overhead_ns"],
                row["ratio_to_cprofile"],
                counting_cell(row),
                row["calls_per_round"],
            ]
            for row in results
        ],
    )
    print()
    benchkit.print_targets(targets)
    print(f"counters over the run: {counters}")
    drops = counters["callspan"]["dropped_queue_full"]
    if drops:
        print(
            f"NOTE: {drops:,} sampled spans were dropped for a full queue: the sampled rows "
            f"partly measure the drop path (queue {queue:,}; see --callspan-queue)"
        )
    benchkit.write_json(
        args.json,
        {
            "benchmark": "overhead",
            "smoke": args.smoke,
            "machine": machine,
            "settings": {
                "rounds": rounds,
                "target_ms_per_loop": target_ms,
                "counting_pairs": pairs,
                "pair_ms_per_loop": pair_ms,
                "collector": "rotel 0.0.1a15 --exporter blackhole (127.0.0.1, OTLP/gRPC)",
                "callspan": f"defaults except sampler and max_queue_size={queue}",
                "otel_sdk": "TracerProvider + BatchSpanProcessor defaults + OTLPSpanExporter",
                "yappi_clock": yappi.get_clock_type(),
                "stack_depth_in_callee": call_depth(),
            },
            "rows": results,
            "targets": targets,
            "counters": counters,
            "elapsed_s": elapsed,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
