"""Markdown tables from the benchmarks' JSON files, for docs/performance.md.

    python benches/report.py bench-results            # overhead/throughput/memory.json there
    python benches/report.py bench-results bench-results/3.12 bench-results/3.13

With several directories it also prints one comparison table of the headline numbers across
them (typically one directory per Python version).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:,.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[str]], align: str) -> str:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def overhead_table(data: dict[str, Any]) -> str:
    rows = []
    for row in data["rows"]:
        ratio = row["ratio_to_cprofile"]
        rows.append(
            [
                f"`{row['name']}`",
                _num(row["ns_per_call"], 1),
                "–" if row["name"] == row["baseline"] else _num(row["overhead_ns"], 1),
                "–" if row["name"] == row["baseline"] else _num(ratio, 2),
                _num(row["min_ns_per_call"], 1),
                _num(row["max_ns_per_call"], 1),
            ]
        )
    return _table(
        ["row", "ns/call (median)", "overhead ns", "× cProfile's overhead", "min", "max"],
        rows,
        "lrrrrr",
    )


def throughput_table(data: dict[str, Any]) -> str:
    rows = []
    for row in data["rows"]:
        rows.append(
            [
                f"`{row['name']}`",
                _num(row["made_per_s"]),
                _num(row["received_per_s"]),
                _num(row["received_in_window_per_s"]),
                _num(row["delivered_pct"], 1),
                _num(row["dropped"]),
                _num(row["flush_s"], 2),
                _num(row["peak_rss_mib"], 1),
            ]
        )
    return _table(
        [
            "variant",
            "made/s",
            "received/s",
            "received/s in window",
            "delivered %",
            "dropped",
            "final flush s",
            "peak RSS MiB",
        ],
        rows,
        "lrrrrrrr",
    )


def memory_table(data: dict[str, Any]) -> str:
    stats = data["stats_after_shutdown"]
    rows = [
        ["calls", _num(data["calls"])],
        ["time", f"{data['seconds']:.1f} s ({data['calls_per_s']:,.0f} calls/s)"],
        ["RSS at start (after warm-up)", f"{data['rss_start_mib']:.1f} MiB"],
        ["RSS at end", f"{data['rss_end_mib']:.1f} MiB ({data['rss_growth_mib']:+.1f} MiB)"],
        ["largest RSS seen while calling", f"+{data['max_sampled_rss_growth_mib']:.1f} MiB"],
        [
            "peak RSS of the process (VmHWM)",
            f"{data['peak_rss_mib']:.1f} MiB ({data['peak_rss_before_calls_mib']:.1f} MiB "
            "before the calls)",
        ],
        ["spans sampled", _num(stats["spans_sampled"])],
        ["dropped: queue full", _num(stats["dropped_queue_full"])],
        ["dropped: export failed", _num(stats["dropped_export_failed"])],
        ["dropped: shutdown", _num(stats["dropped_shutdown"])],
        ["export errors", _num(stats["export_errors"])],
        ["every span accounted for", _num(data["all_spans_accounted"])],
        ["shutdown() with the receiver down", f"{data['shutdown_s']:.2f} s"],
    ]
    return _table(["", "value"], rows, "lr")


def targets_table(*datasets: dict[str, Any] | None) -> str:
    rows = []
    for data in datasets:
        if not data:
            continue
        for target in data["targets"]:
            digits = 2 if abs(target["measured"]) < 100 else 0
            rows.append(
                [
                    target["target"],
                    _num(float(target["measured"]), digits),
                    _num(target["limit"], 2 if isinstance(target["limit"], float) else 0),
                    "met" if target["met"] else "**not met**",
                ]
            )
    return _table(["target", "measured", "limit", "result"], rows, "lrrl")


def versions_table(directories: list[Path]) -> str:
    headers = ["", *(d.name for d in directories)]
    lines: dict[str, list[str]] = {}
    for column, directory in enumerate(directories):
        overhead = _load(directory, "overhead")
        throughput = _load(directory, "throughput")
        memory = _load(directory, "memory")
        cells: dict[str, str] = {}
        if overhead:
            cells["Python"] = overhead["machine"]["python"]
            for row in overhead["rows"]:
                if row["name"] == row["baseline"]:
                    cells[f"`{row['name']}` ns/call"] = _num(row["ns_per_call"], 1)
                else:
                    ratio = _num(row["ratio_to_cprofile"], 2)
                    cells[f"`{row['name']}` overhead ns (× cProfile's)"] = (
                        f"{_num(row['overhead_ns'], 1)} ({ratio}×)"
                    )
        if throughput:
            for row in throughput["rows"]:
                cells[f"`{row['name']}` received/s, delivered %"] = (
                    f"{_num(row['received_per_s'])}, {_num(row['delivered_pct'], 1)} %"
                )
        if memory:
            cells[f"memory: RSS growth over {memory['calls']:,} calls, receiver down"] = (
                f"{max(memory['rss_growth_mib'], memory['max_sampled_rss_growth_mib']):+.1f} MiB"
            )
        for key, value in cells.items():
            lines.setdefault(key, ["–"] * len(directories))[column] = value
    return _table(headers, [[k, *v] for k, v in lines.items()], "l" + "r" * len(directories))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("directories", nargs="+", type=Path)
    args = parser.parse_args(argv)
    first = args.directories[0]
    overhead, throughput, memory = (_load(first, n) for n in ("overhead", "throughput", "memory"))
    if overhead:
        print(f"### Overhead ({first})\n\n{overhead_table(overhead)}\n")
    if throughput:
        print(f"### Throughput ({first})\n\n{throughput_table(throughput)}\n")
    if memory:
        print(f"### Memory ({first})\n\n{memory_table(memory)}\n")
    print(f"### Targets ({first})\n\n{targets_table(overhead, throughput, memory)}\n")
    if len(args.directories) > 1:
        print(f"### Versions\n\n{versions_table(args.directories)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
