"""The data behind the caller view: per caller edge (caller → traced function) the calls, errors,
total time, a latency histogram, p99, call sites and the slowest spans.

Two kinds of input feed the same page:

* spans (an OTLP JSON file, :func:`edges_from_spans`): every number is exact, and each edge
  also carries its slowest spans and its call sites;
* aggregated report data (per caller-edge ``calls``, ``errors``, ``total_ns`` and a histogram,
  as the in-process aggregation reports it): build :class:`CallerEdge` values from it directly;
  p99 is then estimated from the histogram and ``slowest`` / ``sites`` stay empty.

:func:`view_data` turns edges into the JSON the page embeds (its shape is in ``docs/view.md``).
Aggregating here, not in the browser, keeps the page small and fast whatever the span count.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._otlp_json import CallSpan

DATA_VERSION = 1
SLOWEST_KEPT = 10  # slowest spans kept per caller edge for the click-through
# Histogram upper bounds: 1 µs · 2^k, k = 0..27 (1 µs .. 134 s), plus the overflow bucket.
DEFAULT_BOUNDS_NS = tuple(1000 * 2**k for k in range(28))
NO_CALLER = "(no caller attribute)"


@dataclass
class CallerEdge:
    """Calls from one caller function into one traced function."""

    callee: str
    caller: str
    calls: int = 0
    errors: int = 0
    total_ns: int = 0
    bounds_ns: tuple[int, ...] = DEFAULT_BOUNDS_NS  # explicit upper bounds, ascending
    counts: list[int] = field(default_factory=list)  # len(bounds_ns) + 1 buckets
    p99_ns: int | None = None  # exact, when computed from spans; else estimated from counts
    sites: list[dict] = field(default_factory=list)  # {"file", "line", "class", "calls"}
    slowest: list[dict] = field(default_factory=list)  # the slowest spans, slowest first

    def p99(self) -> int:
        if self.p99_ns is not None:
            return self.p99_ns
        return histogram_quantile(self.bounds_ns, self.counts, 0.99)


def histogram_quantile(bounds_ns, counts, q: float) -> int:
    """The upper bound of the bucket holding the q-quantile (an over-estimate by ≤ one bucket)."""
    total = sum(counts)
    if total == 0:
        return 0
    rank = math.ceil(q * total)
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return bounds_ns[index] if index < len(bounds_ns) else bounds_ns[-1]
    return bounds_ns[-1]


def _bucket(bounds_ns, duration_ns: int) -> int:
    low, high = 0, len(bounds_ns)
    while low < high:  # first bound >= duration (upper bounds are inclusive, as in OTLP)
        middle = (low + high) // 2
        if bounds_ns[middle] < duration_ns:
            low = middle + 1
        else:
            high = middle
    return low


def _span_row(span: CallSpan) -> dict:
    return {
        "duration_ns": span.duration_ns,
        "file": span.caller_file,
        "line": span.caller_line,
        "class": span.caller_class,
        "thread": span.thread,
        "error": span.error,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "start_unix_nano": span.start_unix_nano,
    }


def edges_from_spans(spans: Iterable[CallSpan]) -> list[CallerEdge]:
    """Aggregates spans into one exact :class:`CallerEdge` per (callee, caller)."""
    durations: dict[tuple[str, str], list[int]] = {}
    errors: Counter = Counter()
    sites: dict[tuple[str, str], Counter] = {}
    slowest: dict[tuple[str, str], list] = {}
    sequence = 0
    for span in spans:
        key = (span.callee, span.caller or NO_CALLER)
        durations.setdefault(key, []).append(span.duration_ns)
        if span.error:
            errors[key] += 1
        site = (span.caller_file, span.caller_line, span.caller_class)
        sites.setdefault(key, Counter())[site] += 1
        heap = slowest.setdefault(key, [])
        sequence += 1  # breaks ties so that spans themselves are never compared
        entry = (span.duration_ns, sequence, span)
        if len(heap) < SLOWEST_KEPT:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)
    edges = []
    for (callee, caller), values in durations.items():
        values.sort()
        counts = [0] * (len(DEFAULT_BOUNDS_NS) + 1)
        for value in values:
            counts[_bucket(DEFAULT_BOUNDS_NS, value)] += 1
        edges.append(
            CallerEdge(
                callee=callee,
                caller=caller,
                calls=len(values),
                errors=errors[(callee, caller)],
                total_ns=sum(values),
                counts=counts,
                p99_ns=values[max(0, math.ceil(0.99 * len(values)) - 1)],
                sites=[
                    {"file": file, "line": line, "class": cls, "calls": n}
                    for (file, line, cls), n in sites[(callee, caller)].most_common()
                ],
                slowest=[
                    _span_row(span)
                    for _, _, span in sorted(slowest[(callee, caller)], reverse=True)
                ],
            )
        )
    return edges


def view_data(edges: Iterable[CallerEdge], source: str, span_count: int | None = None) -> dict:
    """The JSON-ready page data: functions ranked by total time, each with its callers ranked."""
    by_callee: dict[str, list[CallerEdge]] = {}
    for edge in edges:
        by_callee.setdefault(edge.callee, []).append(edge)
    functions: list[dict[str, Any]] = []
    for callee, callee_edges in by_callee.items():
        callee_edges.sort(key=lambda edge: (-edge.total_ns, edge.caller))
        functions.append(
            {
                "name": callee,
                "calls": sum(edge.calls for edge in callee_edges),
                "errors": sum(edge.errors for edge in callee_edges),
                "total_ns": sum(edge.total_ns for edge in callee_edges),
                "callers": [
                    {
                        "caller": edge.caller,
                        "calls": edge.calls,
                        "errors": edge.errors,
                        "total_ns": edge.total_ns,
                        "mean_ns": edge.total_ns // edge.calls if edge.calls else 0,
                        "p99_ns": edge.p99(),
                        "p99_exact": edge.p99_ns is not None,
                        "histogram": {"bounds_ns": list(edge.bounds_ns), "counts": edge.counts},
                        "sites": edge.sites,
                        "slowest": edge.slowest,
                    }
                    for edge in callee_edges
                ],
            }
        )
    functions.sort(key=lambda function: (-function["total_ns"], function["name"]))
    total_calls = sum(function["calls"] for function in functions)
    return {
        "version": DATA_VERSION,
        "source": source,
        "span_count": total_calls if span_count is None else span_count,
        "functions": functions,
        "edges": [
            {"caller": caller["caller"], "callee": function["name"], "calls": caller["calls"]}
            for function in functions
            for caller in function["callers"]
        ],
    }
