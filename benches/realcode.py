"""Real-workload benchmark: every function and method of pyparsing traced, parsing that backtracks.

The workload (``benches/realcode_workload.py``): pyparsing's pinned sdist from ``tests/realcode``
parses generated arithmetic (``infix_notation``, packrat off) and JSON-like text: millions of
calls of pyparsing's functions, and a ``ParseException`` raised and caught as control flow for
every failed alternative (counts in the output, from the cProfile row). For the decorated rows
every ``def`` of pyparsing gets the decorator at import, by the rewriter of the transparency
harness (``tests/realcode/realcode_rewrite.py``).

Rows, each a child process (a fresh interpreter: decoration happens at import), in interleaved
rounds (every round runs every row once, the order rotated by one per round):

* ``undecorated``: plain pyparsing; the baseline.
* ``callspan_sampled``: ``@callspan.trace`` on every def, the default sampler
  (``parentbased_always_on``: every call is a sampled span), exporting over OTLP/gRPC with the
  default settings to rotel (PyPI ``rotel``, ``--exporter blackhole``) on 127.0.0.1, started by
  this script. Delivered and dropped spans come from ``callspan.stats()`` after a flush.
* ``callspan_always_off`` / ``callspan_traceidratio_0.01``: the same decoration and receiver,
  ``OTEL_TRACES_SAMPLER=always_off`` / ``traceidratio`` with ratio 0.01.
* ``cprofile``, ``yappi`` (default CPU clock), ``viztracer`` (default ring buffer, not saved):
  undecorated pyparsing under the profiler.
* ``otel_sdk``: every def decorated with the OpenTelemetry SDK's ``start_as_current_span``
  (TracerProvider, BatchSpanProcessor defaults, OTLP/gRPC to the same rotel). It is two orders of
  magnitude slower, so it runs ``--otel-fraction`` of the inputs, next to
  ``undecorated_otel_scale``, the undecorated run of the same inputs, which its ratio is taken to.

Each child times one pass over the inputs (after a warm-up on other inputs) with
``time.perf_counter``; exporting rows then flush, timed separately (``flush s``). Reported per
row: the median wall time, and the medians over rounds of the per-round ratios to
``undecorated`` and to ``cprofile`` (the OTel row: to ``undecorated_otel_scale``, and through it
to cProfile's ratio). Every row must produce the same parse results (a digest, checked).

    python benches/realcode.py [--quick] [--rounds R] [--inputs N] [--json PATH]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchkit
import realcode_workload

DEFAULT_INPUTS = 500
DEFAULT_ROUNDS = 3
QUICK_INPUTS = 4
QUICK_ROUNDS = 2
OTEL_FRACTION = 1 / 50
BASELINE, PROFILER = "undecorated", "cprofile"
OTEL, OTEL_BASELINE = "otel_sdk", "undecorated_otel_scale"


@dataclass
class Row:
    name: str
    kind: str  # realcode_workload.ROW_KINDS
    env: dict[str, str] = field(default_factory=dict)
    small: bool = False  # runs the OTel fraction of the inputs
    results: list[dict[str, Any]] = field(default_factory=list)

    def walls(self) -> list[float]:
        return [result["wall_s"] for result in self.results]


# Where each row kind keeps its span counts, and their names there: sampled (made), exported,
# dropped, failed.
SPAN_COUNTS = {
    "stats": ("spans_sampled", "spans_exported", "spans_dropped", "export_errors"),
    "otel_sdk": ("spans_made", "spans_exported", "spans_dropped", "spans_failed"),
}


def rows(endpoint: str) -> list[Row]:
    export = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "realcode-bench",
    }
    return [
        Row(BASELINE, "undecorated"),
        Row("callspan_sampled", "callspan", export),
        Row("callspan_always_off", "callspan", {**export, "OTEL_TRACES_SAMPLER": "always_off"}),
        Row(
            "callspan_traceidratio_0.01",
            "callspan",
            {**export, "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
        ),
        Row(PROFILER, "cprofile"),
        Row("yappi", "yappi"),
        Row("viztracer", "viztracer"),
        Row(OTEL, "otel_sdk", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, small=True),
        Row(OTEL_BASELINE, "undecorated", small=True),
    ]


def run_child(row: Row, inputs: int, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{row.name}.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(row.env, PYTHONHASHSEED="0")
    command = [sys.executable, __file__, "--child", row.kind, "--inputs", str(inputs)]
    completed = subprocess.run(
        [*command, "--out", str(out)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"row {row.name} failed (exit {completed.returncode}):\n"
            f"{completed.stdout}{completed.stderr}"
        )
    return json.loads(out.read_text())


def ratio_medians(row: Row, baseline: Row) -> float:
    return benchkit.median([a / b for a, b in zip(row.walls(), baseline.walls())])


def summarise(table: list[Row]) -> list[dict[str, Any]]:
    by_name = {row.name: row for row in table}
    cprofile_ratio = ratio_medians(by_name[PROFILER], by_name[BASELINE])
    summary = []
    for row in table:
        baseline = by_name[OTEL_BASELINE if row.small else BASELINE]
        x_undecorated = ratio_medians(row, baseline)
        entry: dict[str, Any] = {
            "row": row.name,
            "inputs": row.results[0]["inputs"],
            "wall_s": benchkit.median(row.walls()),
            "x_undecorated": x_undecorated,
            # The small rows have no cProfile run of their own: their ratio to undecorated over
            # cProfile's.
            "x_cprofile": (
                x_undecorated / cprofile_ratio
                if row.small
                else ratio_medians(row, by_name[PROFILER])
            ),
            "walls_s": row.walls(),
        }
        flushes = [result["flush_s"] for result in row.results if "flush_s" in result]
        if flushes:
            entry["flush_s"] = benchkit.median(flushes)
        # callspan's stats() and the OTel SDK's counting exporter name the same four counts
        # differently: sampled (made), exported, dropped, failed.
        for source, (made, exported, dropped, failed) in SPAN_COUNTS.items():
            counts = [result[source] for result in row.results if source in result]
            if not counts:
                continue
            entry["spans_sampled"] = benchkit.median([c[made] for c in counts])
            entry["spans_exported"] = benchkit.median([c[exported] for c in counts])
            entry["spans_dropped"] = benchkit.median([c[dropped] for c in counts])
            entry["export_errors"] = sum(c[failed] for c in counts)
            if source == "stats":
                entry["stats"] = counts
        summary.append(entry)
    return summary


def check_results(table: list[Row]) -> list[str]:
    """Rows whose parse results differ from the undecorated run of the same inputs."""
    expected = {row.small: row.results[0]["digest"] for row in table if row.kind == "undecorated"}
    return [
        row.name
        for row in table
        if any(result["digest"] != expected[row.small] for result in row.results)
    ]


def main() -> int:
    p = benchkit.parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the smoke scale (same as --smoke)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--inputs", type=int, help=f"inputs parsed per row (default {DEFAULT_INPUTS})")
    p.add_argument("--otel-fraction", type=float, default=OTEL_FRACTION)
    p.add_argument("--child", choices=sorted(realcode_workload.ROW_KINDS), help=argparse_hidden())
    p.add_argument("--out", help=argparse_hidden())
    p.add_argument("--warmup", type=int, help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        realcode_workload.child(args.child, args.inputs, args.out, args.warmup)
        return 0
    quick = args.quick or args.smoke
    inputs = args.inputs or (QUICK_INPUTS if quick else DEFAULT_INPUTS)
    rounds = args.rounds or (QUICK_ROUNDS if quick else DEFAULT_ROUNDS)
    small_inputs = max(1, round(inputs * args.otel_fraction))
    benchkit.clean_otel_env()
    machine = benchkit.machine()
    realcode_workload.harness.source_tree(realcode_workload.LIBRARY)  # downloads it once
    from rotel import RotelAgent

    with RotelAgent(exporter="blackhole") as agent, tempfile.TemporaryDirectory() as scratch:
        table = rows(agent.grpc_endpoint)
        for round_index in range(rounds):
            shift = round_index % len(table)
            for row in table[shift:] + table[:shift]:
                count = small_inputs if row.small else inputs
                row.results.append(run_child(row, count, Path(scratch)))
                wall = row.results[-1]["wall_s"]
                print(f"round {round_index + 1}/{rounds}: {row.name} {wall:.2f} s", file=sys.stderr)
    summary = summarise(table)
    census = next(row for row in table if row.name == PROFILER).results[0]
    print(
        f"CPython {sys.version.split()[0]}, pyparsing {table[0].results[0]['pyparsing']}: "
        f"{inputs} inputs ({census['pyparsing_calls']:,} calls of pyparsing functions, "
        f"{census['exceptions_made']:,} exceptions made, counted by cProfile), "
        f"{rounds} rounds; {OTEL} and {OTEL_BASELINE}: {small_inputs} inputs"
    )
    benchkit.print_table(
        [
            "row",
            "wall s",
            "x undecorated",
            "x cProfile",
            "flush s",
            "sampled",
            "exported",
            "dropped",
        ],
        [
            [
                s["row"],
                s["wall_s"],
                s["x_undecorated"],
                s["x_cprofile"],
                s.get("flush_s"),
                s.get("spans_sampled"),
                s.get("spans_exported"),
                s.get("spans_dropped"),
            ]
            for s in summary
        ],
    )
    by_row = {s["row"]: s for s in summary}
    targets = [
        {
            "target": "callspan sampled, exporting: wall below cProfile's",
            "measured": round(by_row["callspan_sampled"]["x_cprofile"], 3),
            "limit": 1.0,
            "met": by_row["callspan_sampled"]["x_cprofile"] < 1.0,
        },
        {
            "target": "callspan always_off: within 10 % of undecorated",
            "measured": round(by_row["callspan_always_off"]["x_undecorated"], 3),
            "limit": 1.1,
            "met": by_row["callspan_always_off"]["x_undecorated"] <= 1.1,
        },
    ]
    print()
    benchkit.print_targets(targets)
    differing = check_results(table)
    if differing:
        print(f"\nparse results differ from the undecorated run: {', '.join(differing)}")
    benchkit.write_json(
        args.json,
        {
            "benchmark": "realcode",
            "smoke": quick,
            "machine": machine,
            "inputs": inputs,
            "otel_inputs": small_inputs,
            "rounds": rounds,
            "census": {k: census[k] for k in ("pyparsing_calls", "exceptions_made")},
            "receiver": "rotel 0.0.1a15 --exporter blackhole (127.0.0.1, OTLP/gRPC)",
            "rows": summary,
            "results_differ": differing,
            "targets": targets,
        },
    )
    return 1 if differing else 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
