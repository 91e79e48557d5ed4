"""``python -m callspan view``: real spans from the file exporter, aggregated into one HTML page.

The spans come from tests/scripts/view_callers.py run in a child process with the file exporter;
the page is written by the command itself and read back (its embedded data) or opened in a real
headless Chromium (test_view_browser.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from callspan._view_data import CallerEdge, histogram_quantile, view_data
from e2e_support import SCRIPTS_DIR, marker_line, parse_output, run_python_script

SCRIPT = SCRIPTS_DIR / "view_callers.py"
CHECKSUM = "__main__.checksum"


def page_data(html: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="callspan-data">(.*?)</script>', html, re.S
    )
    assert match, "the page embeds its data"
    return json.loads(match.group(1))


def run_view(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "callspan", "view", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def span_file(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("view")
    spans = workdir / "callspan-spans.jsonl"
    completed = run_python_script(
        SCRIPT,
        "http://127.0.0.1:9",  # unused: the file exporter writes the spans
        env={"CALLSPAN_EXPORTER": "file", "CALLSPAN_FILE": str(spans)},
        workdir=workdir,
    )
    assert parse_output(completed.stdout).facts["script_file"] == str(SCRIPT)
    return spans


@pytest.fixture(scope="module")
def page(span_file) -> tuple[Path, dict, str]:
    completed = run_view(cwd=span_file.parent)  # no FILE: the file exporter's default name
    assert completed.returncode == 0, completed.stderr
    html_path = span_file.with_suffix(".html")
    assert f"wrote {html_path}" in completed.stdout
    return html_path, page_data(html_path.read_text()), completed.stdout


def test_page_ranks_callers_by_total_time_with_counts_and_sites(page):
    _, data, _ = page
    assert data["span_count"] == 100
    functions = {function["name"]: function for function in data["functions"]}
    assert set(functions) == {CHECKSUM, "__main__.load"}
    callers = functions[CHECKSUM]["callers"]
    assert [caller["total_ns"] for caller in callers] == sorted(
        (caller["total_ns"] for caller in callers), reverse=True
    )
    by_name = {caller["caller"]: caller for caller in callers}
    expected = {
        "__main__.Resizer.resize": (60, 0, "resize", "__main__.Resizer"),
        "__main__.Cropper.crop": (20, 5, "crop", "__main__.Cropper"),
        "__main__.thumbnail": (10, 0, "thumbnail", None),
        "__main__.load": (5, 0, "load", None),
    }
    assert set(by_name) == set(expected)
    for name, (calls, errors, marker, cls) in expected.items():
        caller = by_name[name]
        assert (caller["calls"], caller["errors"]) == (calls, errors), name
        assert caller["sites"] == [
            {"file": str(SCRIPT), "line": marker_line(SCRIPT, marker), "class": cls, "calls": calls}
        ]
        assert caller["mean_ns"] == caller["total_ns"] // calls
        assert sum(caller["histogram"]["counts"]) == calls
        slowest = [row["duration_ns"] for row in caller["slowest"]]
        assert slowest == sorted(slowest, reverse=True) and len(slowest) == min(10, calls)
        assert max(slowest) >= caller["p99_ns"] >= caller["mean_ns"] or calls < 100
    crop_errors = [row for row in by_name["__main__.Cropper.crop"]["slowest"] if row["error"]]
    assert crop_errors, "erroring calls are marked in the slowest spans"
    assert {"caller": "__main__.load", "callee": CHECKSUM, "calls": 5} in data["edges"]


def test_command_prints_the_callers_and_where_the_page_is(page):
    html_path, _, stdout = page
    resize = next(line for line in stdout.splitlines() if "from __main__.Resizer.resize" in line)
    assert "60 x" in resize and f"line {marker_line(SCRIPT, 'resize')}" in resize
    assert "on __main__.Resizer" in resize and "p99" in resize
    html = html_path.read_text()
    # Self-contained: no external script, style, image or font.
    assert not re.search(r'\b(src|href)=["\']?(https?:)?//', html)
    assert "<link" not in html


def test_view_reads_pretty_printed_and_array_otlp_json(span_file, tmp_path):
    requests = [json.loads(line) for line in span_file.read_text().splitlines() if line.strip()]
    merged = {"resourceSpans": [rs for request in requests for rs in request["resourceSpans"]]}
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(merged, indent=2))
    array = tmp_path / "array.json"
    array.write_text(json.dumps(requests))
    for source in (pretty, array):
        out = tmp_path / (source.stem + ".html")
        completed = run_view(source, "-o", out)
        assert completed.returncode == 0, completed.stderr
        assert page_data(out.read_text())["span_count"] == 100


def test_view_explains_a_missing_or_foreign_file(tmp_path):
    completed = run_view(tmp_path / "nothing.jsonl")
    assert completed.returncode == 1
    assert "CALLSPAN_EXPORTER=file" in completed.stderr
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"data": []}')
    completed = run_view(foreign)
    assert completed.returncode == 1 and "resourceSpans" in completed.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"resourceSpans": []}\n{not json\n')
    completed = run_view(broken)
    assert completed.returncode == 1 and "line 2" in completed.stderr


def test_report_data_edges_feed_the_same_shape():
    # What the in-process aggregation reports per caller edge: counts and a histogram, no spans.
    bounds = (1_000, 10_000, 100_000)
    edge = CallerEdge(
        callee="imgpipe.Transformer.apply_transform",
        caller="imgpipe.Rotator.rotate_image",
        calls=200,
        errors=3,
        total_ns=900_000,
        bounds_ns=bounds,
        counts=[150, 47, 3, 0],
    )
    data = view_data([edge], source="report")
    (function,) = data["functions"]
    (caller,) = function["callers"]
    assert caller["p99_ns"] == 100_000 and caller["p99_exact"] is False
    assert caller["mean_ns"] == 4_500 and caller["slowest"] == [] and caller["sites"] == []
    assert histogram_quantile(bounds, [150, 47, 3, 0], 0.5) == 1_000
    assert histogram_quantile(bounds, [0, 0, 0, 5], 0.99) == 100_000  # overflow: last bound


def test_console_script_runs_the_same_command(span_file, tmp_path):
    script = Path(sys.executable).with_name("callspan")
    assert script.is_file(), "the package installs a `callspan` console script"
    out = tmp_path / "from-script.html"
    completed = subprocess.run(
        [str(script), "view", str(span_file), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"wrote {out}" in completed.stdout
    assert page_data(out.read_text())["span_count"] == 100


REPORTING = """
import callspan

@callspan.trace
def apply_transform(i):
    return i

def rotate_image():
    for i in range(30):
        apply_transform(i)

def scale_image():
    for i in range(12):
        apply_transform(i)

rotate_image()
scale_image()
callspan.report(file=REPORT_PATH, format="json")
"""


def test_view_draws_the_page_from_a_caller_report(tmp_path):
    # Every call counted with sampling off: the report, not spans, is the page's data.
    report = tmp_path / "report.json"
    run_python_script(
        REPORTING.replace("REPORT_PATH", repr(str(report))),
        "http://127.0.0.1:9",
        env={"OTEL_TRACES_SAMPLER": "always_off", "CALLSPAN_REPORT": str(tmp_path / "exit.txt")},
        workdir=tmp_path,
    )
    done = run_view(report, "-o", tmp_path / "page.html")
    assert done.returncode == 0, done.stderr
    (function,) = page_data((tmp_path / "page.html").read_text())["functions"]
    assert function["name"] == "__main__.apply_transform"
    assert {c["caller"]: c["calls"] for c in function["callers"]} == {
        "__main__.rotate_image": 30,
        "__main__.scale_image": 12,
    }
    assert all(sum(c["histogram"]["counts"]) == c["calls"] for c in function["callers"])
    assert all(c["slowest"] == [] for c in function["callers"])
