"""The caller report and the pstats file: every traced function, who called it, how often, how long.

Both are built from *edge rows*, one per callee × call site (caller function, file, line, class) ×
exception type, each a dict with ``function``, ``function_file``, ``function_line``,
``caller_function``, ``caller_file``, ``caller_line``, ``caller_class``, ``error_type``,
``calls``, ``total_ns`` and ``buckets`` (calls per duration bucket, upper bounds
``EDGE_BUCKET_BOUNDS_NS``). Two sources give them:

* the process itself (``_callspan.edges()``): every call counted in Rust, sampled or not, while a
  metrics exporter or ``CALLSPAN_REPORT`` is configured;
* an OTLP JSON span file written by the file exporter (:func:`rows_from_spans`), for
  ``python -m callspan report FILE``: the calls that became spans.

:func:`render` makes the aligned text table or the JSON document; :func:`write_pstats` the file
``pstats.Stats`` loads.
"""

from __future__ import annotations

import json
import marshal
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import _callspan
from ._otlp_json import CallSpan
from ._view_data import histogram_quantile

BOUNDS_NS: tuple[int, ...] = tuple(_callspan.EDGE_BUCKET_BOUNDS_NS)
SORT_KEYS = ("total", "calls", "mean", "name")


def _bucket(duration_ns: int) -> int:
    for index, bound in enumerate(BOUNDS_NS):
        if duration_ns <= bound:
            return index
    return len(BOUNDS_NS)


def rows_from_spans(spans: Iterable[CallSpan]) -> list[dict]:
    """Edge rows from spans (an OTLP JSON file's): one per callee and call site, errors apart."""
    rows: dict[tuple, dict] = {}
    for span in spans:
        error = "error" if span.error else ""
        key = (
            span.callee,
            span.caller,
            span.caller_file,
            span.caller_line,
            span.caller_class,
            error,
        )
        row = rows.get(key)
        if row is None:
            row = rows[key] = {
                "function": span.callee,
                "function_file": "",
                "function_line": 0,
                "caller_function": span.caller or "",
                "caller_file": span.caller_file or "",
                "caller_line": span.caller_line or 0,
                "caller_class": span.caller_class or "",
                "error_type": error,
                "overflow": False,
                "calls": 0,
                "total_ns": 0,
                "buckets": [0] * (len(BOUNDS_NS) + 1),
                "exemplars": [],
            }
        row["calls"] += 1
        row["total_ns"] += span.duration_ns
        row["buckets"][_bucket(span.duration_ns)] += 1
    return list(rows.values())


def _sum_buckets(into: list[int], buckets: list[int]) -> None:
    for index, count in enumerate(buckets):
        into[index] += count


def aggregate(rows: Iterable[dict], sort: str = "total") -> list[dict]:
    """Rows grouped per traced function, each with its callers (call sites), both sorted."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    functions: dict[str, dict] = {}
    for row in rows:
        function = functions.get(row["function"])
        if function is None:
            function = functions[row["function"]] = {
                "function": row["function"],
                "file": row["function_file"],
                "line": row["function_line"],
                "calls": 0,
                "errors": 0,
                "total_ns": 0,
                "buckets": [0] * (len(BOUNDS_NS) + 1),
                "callers": {},
            }
        failed = row["calls"] if row["error_type"] else 0
        function["calls"] += row["calls"]
        function["errors"] += failed
        function["total_ns"] += row["total_ns"]
        _sum_buckets(function["buckets"], row["buckets"])
        site = (row["caller_function"], row["caller_file"], row["caller_line"], row["caller_class"])
        caller = function["callers"].get(site)
        if caller is None:
            caller = function["callers"][site] = {
                "caller_function": row["caller_function"],
                "caller_file": row["caller_file"],
                "caller_line": row["caller_line"],
                "caller_class": row["caller_class"],
                "calls": 0,
                "errors": 0,
                "total_ns": 0,
                "buckets": [0] * (len(BOUNDS_NS) + 1),
            }
        caller["calls"] += row["calls"]
        caller["errors"] += failed
        caller["total_ns"] += row["total_ns"]
        _sum_buckets(caller["buckets"], row["buckets"])

    def order(entry: dict, name: str):
        mean = entry["total_ns"] / entry["calls"] if entry["calls"] else 0
        return {
            "total": (-entry["total_ns"], entry[name]),
            "calls": (-entry["calls"], entry[name]),
            "mean": (-mean, entry[name]),
            "name": (entry[name], 0),
        }[sort]

    result = []
    for function in functions.values():
        calls = function["calls"]
        callers = sorted(
            function.pop("callers").values(),
            key=lambda c: (*order(c, "caller_function"), c["caller_file"], c["caller_line"]),
        )
        for caller in callers:
            caller["mean_ns"] = caller["total_ns"] // caller["calls"] if caller["calls"] else 0
        buckets = function.pop("buckets")
        function["mean_ns"] = function["total_ns"] // calls if calls else 0
        function["p99_ns"] = histogram_quantile(BOUNDS_NS, buckets, 0.99)
        function["callers"] = callers
        result.append(function)
    result.sort(key=lambda f: order(f, "function"))
    return result


def format_ns(ns: float) -> str:
    """A duration for a terminal: ``812 ns``, ``3.40 µs``, ``12.5 ms``, ``2.01 s``."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    for unit, scale in (("µs", 1e3), ("ms", 1e6), ("s", 1e9)):
        value = ns / scale
        if value < 1000 or unit == "s":
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def _table(header: list[str], rows: list[list[str]], right: set[int], indent: str) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def render(rows: Iterable[dict], sort: str = "total", fmt: str = "text", source: str = "") -> str:
    """The report of `rows` as aligned text (``fmt="text"``) or a JSON document (``"json"``)."""
    functions = aggregate(rows, sort)
    if fmt == "json":
        # `bounds_ns` and each caller's `buckets` (the duration histogram, one more bucket than
        # bounds) let `callspan view` draw the page from this document too.
        document = {"source": source, "bounds_ns": list(BOUNDS_NS), "functions": functions}
        return json.dumps(document, indent=2) + "\n"
    if fmt != "text":
        raise ValueError(f"format must be 'text' or 'json', not {fmt!r}")
    total_calls = sum(f["calls"] for f in functions)
    lines = [
        f"callspan report ({source}): {len(functions)} traced function(s), {total_calls} calls"
    ]
    if not functions:
        lines.append("  no calls counted")
    for f in functions:
        lines.append("")
        lines.extend(
            _table(
                ["function", "calls", "errors", "total", "mean", "p99"],
                [
                    [
                        f["function"],
                        str(f["calls"]),
                        str(f["errors"]),
                        format_ns(f["total_ns"]),
                        format_ns(f["mean_ns"]),
                        format_ns(f["p99_ns"]),
                    ]
                ],
                {1, 2, 3, 4, 5},
                "",
            )
        )
        lines.extend(
            _table(
                ["called by", "file:line", "class", "calls", "errors", "total", "mean"],
                [
                    [
                        c["caller_function"] or "(no Python caller)",
                        f"{c['caller_file']}:{c['caller_line']}" if c["caller_file"] else "",
                        c["caller_class"],
                        str(c["calls"]),
                        str(c["errors"]),
                        format_ns(c["total_ns"]),
                        format_ns(c["mean_ns"]),
                    ]
                    for c in f["callers"]
                ],
                {3, 4, 5, 6},
                "    ",
            )
        )
    return "\n".join(lines) + "\n"


def pstats_data(rows: Iterable[dict]) -> dict:
    """`rows` as the dict ``pstats.Stats`` loads: ``{(file, line, name): (cc, nc, tt, ct,
    callers)}``, each caller ``{(file, line, name): (nc, cc, tt, ct)}`` (the two levels order
    their counts differently, as cProfile writes them). Times in seconds; a function's own time
    is its total minus the traced calls it made."""
    rows = list(rows)
    names: dict[Any, Any] = {}
    for row in rows:
        names.setdefault(
            row["function"], (row["function_file"], row["function_line"], row["function"])
        )

    def caller_key(row: dict) -> tuple:
        traced = names.get(row["caller_function"])
        if traced is not None:
            return traced
        return (row["caller_file"] or "~", 0, row["caller_function"] or "<C caller>")

    stats: dict[tuple, list] = {}
    children_ns: dict[tuple, int] = {}
    for row in rows:
        key = names[row["function"]]
        entry = stats.setdefault(key, [0, 0, 0, {}])
        entry[0] += row["calls"]
        entry[1] += row["total_ns"]
        by = caller_key(row)
        calls, total = entry[3].get(by, (0, 0))
        entry[3][by] = (calls + row["calls"], total + row["total_ns"])
        children_ns[by] = children_ns.get(by, 0) + row["total_ns"]
    out = {}
    for key, (calls, total_ns, _, callers) in stats.items():
        own_ns = max(0, total_ns - children_ns.get(key, 0))
        share = own_ns / total_ns if total_ns else 0.0
        out[key] = (
            calls,
            calls,
            own_ns / 1e9,
            total_ns / 1e9,
            {by: (n, n, ns * share / 1e9, ns / 1e9) for by, (n, ns) in callers.items()},
        )
    # Callers that are not traced have no counts of their own, but every function a caller
    # names needs an entry (gprof2dot requires one): their time is that of the traced calls
    # they made, all of it spent in callees.
    for _, _, _, _, callers in list(out.values()):
        for by in callers:
            if by not in out:
                out[by] = (0, 0, 0.0, children_ns.get(by, 0) / 1e9, {})
    return out


def write_pstats(rows: Iterable[dict], path: str | os.PathLike) -> Path:
    """Writes `rows` as a pstats file (``pstats.Stats(path)``, snakeviz, tuna, gprof2dot)."""
    path = Path(path)
    with open(path, "wb") as f:
        marshal.dump(pstats_data(rows), f)
    return path
