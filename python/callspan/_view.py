"""``python -m callspan view``: one self-contained HTML page of who calls the traced functions.

Reads an OTLP JSON file (:mod:`callspan._otlp_json`), aggregates it into caller edges
(:mod:`callspan._view_data`) and writes one HTML file with the data, CSS, JS and SVG inline: it
fetches nothing, so it opens from disk, from a CI artifact or an e-mail attachment alike. It
also prints the callers of each function, ranked by total time.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._otlp_json import read_spans
from ._view_data import CallerEdge, edges_from_spans, view_data

DEFAULT_INPUT = "callspan-spans.jsonl"  # the file exporter's default (CALLSPAN_FILE)
_TEMPLATE = Path(__file__).with_name("_view_page.html")
_PLACEHOLDER = "__CALLSPAN_DATA__"


def render_html(data: dict) -> str:
    """The page for ``data`` (the shape of :func:`callspan._view_data.view_data`)."""
    # Inside <script> only "</" can end the element early; "<\/" is the same JSON string.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return _TEMPLATE.read_text(encoding="utf-8").replace(_PLACEHOLDER, payload)


def default_output(source: Path) -> Path:
    return (
        source.with_suffix(".html")
        if source.suffix != ".html"
        else source.with_name(source.name + ".view.html")
    )


def _format_ns(ns: int) -> str:
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1_000:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns} ns"


def summary_lines(data: dict, callers_per_function: int = 5) -> list[str]:
    """Plain-text summary: per function, its top callers by total time."""
    lines = []
    for function in data["functions"]:
        lines.append(
            f"{function['name']}: {function['calls']} calls, {_format_ns(function['total_ns'])}"
        )
        for caller in function["callers"][:callers_per_function]:
            where = ", ".join(
                f"line {site['line']}" + (f" on {site['class']}" if site["class"] else "")
                for site in caller["sites"][:3]
            )
            lines.append(
                f"  {caller['calls']:6d} x from {caller['caller']}"
                f"  total {_format_ns(caller['total_ns'])}, mean {_format_ns(caller['mean_ns'])},"
                f" p99 {_format_ns(caller['p99_ns'])}" + (f"  ({where})" if where else "")
            )
        hidden = len(function["callers"]) - callers_per_function
        if hidden > 0:
            lines.append(f"  ... and {hidden} more caller(s) in the page")
    return lines


def edges_from_report(document: dict) -> list[CallerEdge]:
    """The caller edges of a caller report (``callspan.report(format="json")``, or
    ``CALLSPAN_REPORT``'s file written with ``format="json"``): every call counted, no spans."""
    bounds = tuple(document["bounds_ns"])
    edges: dict[tuple[str, str], CallerEdge] = {}
    for function in document["functions"]:
        for caller in function["callers"]:
            key = (function["function"], caller["caller_function"])
            edge = edges.get(key)
            if edge is None:
                edge = edges[key] = CallerEdge(
                    callee=function["function"],
                    caller=caller["caller_function"],
                    bounds_ns=bounds,
                    counts=[0] * (len(bounds) + 1),
                )
            edge.calls += caller["calls"]
            edge.errors += caller["errors"]
            edge.total_ns += caller["total_ns"]
            edge.counts = [a + b for a, b in zip(edge.counts, caller["buckets"])]
            edge.sites.append(
                {
                    "file": caller["caller_file"],
                    "line": caller["caller_line"],
                    "class": caller["caller_class"],
                    "calls": caller["calls"],
                }
            )
    return list(edges.values())


def _report_document(source: Path) -> dict | None:
    """``source`` as a caller report JSON document; None for OTLP JSON or anything else."""
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(document, dict) and "functions" in document and "bounds_ns" in document:
        return document
    return None


def write_view(source: str | Path, output: str | Path | None = None) -> tuple[Path, dict]:
    """Reads ``source`` (OTLP JSON spans, or a caller report JSON document), writes the page;
    returns the page's path and its data."""
    source = Path(source)
    report = _report_document(source)
    if report is not None:
        edges = edges_from_report(report)
        data = view_data(edges, source=str(source))
    else:
        data = view_data(edges_from_spans(read_spans(source)), source=str(source))
    target = Path(output) if output is not None else default_output(source)
    target.write_text(render_html(data), encoding="utf-8")
    return target, data
