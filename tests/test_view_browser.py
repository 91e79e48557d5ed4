"""The caller view in a real browser: Debian's headless Chromium driven by Playwright.

Asserts on what the page shows: the callers of each traced function in order of total time, and,
after a click on a caller row, its slowest spans with their call site ``file:line`` and class.
"""

from __future__ import annotations

from pathlib import Path

from browser import browser_page
from callspan._view import render_html
from callspan._view_data import CallerEdge, view_data
from e2e_support import marker_line
from test_view import SCRIPT, page, span_file  # noqa: F401  (the fixtures: spans, then page)


def test_clicking_a_caller_shows_its_slowest_calls_with_call_sites(page, tmp_path):  # noqa: F811
    html_path, data, _ = page
    with browser_page() as tab:
        tab.goto(html_path.as_uri())
        section = tab.locator('section[data-function="__main__.checksum"]')
        rows = section.locator("tr.caller")
        expected_order = [
            caller["caller"]
            for function in data["functions"]
            if function["name"] == "__main__.checksum"
            for caller in function["callers"]
        ]
        assert [rows.nth(i).get_attribute("data-caller") for i in range(rows.count())] == (
            expected_order
        )
        assert section.locator("tr.detail").count() == 0
        crop = section.locator('tr.caller[data-caller="__main__.Cropper.crop"]')
        assert crop.locator("td").nth(1).inner_text() == "20"
        crop.click()
        detail = section.locator("tr.detail")
        assert detail.count() == 1
        text = detail.inner_text()
        assert "Slowest calls from __main__.Cropper.crop" in text
        assert f"scripts/view_callers.py:{marker_line(SCRIPT, 'crop')}" in text
        assert "__main__.Cropper" in text and "ERROR" in text
        assert detail.locator("table.slowest tr").count() == 1 + 10  # header + slowest kept
        assert tab.locator("#graph g.node").count() == 6  # 4 callers + checksum + main
        tab.screenshot(path=str(tmp_path / "view.png"), full_page=True)
        crop.click()  # a second click folds the detail away
        assert section.locator("tr.detail").count() == 0
        assert tab.errors == []
        assert all(url.startswith("file://") for url in tab.requests), tab.requests
    assert Path(tmp_path / "view.png").stat().st_size > 10_000


def test_report_data_renders_with_estimated_p99_and_no_span_list(tmp_path):
    # Aggregated report data (no individual spans) through the same page.
    edges = [
        CallerEdge(
            "imgpipe.Transformer.apply_transform",
            "imgpipe.Rotator.rotate_image",
            calls=300,
            errors=2,
            total_ns=3_000_000,
            bounds_ns=(1_000, 10_000, 100_000),
            counts=[100, 190, 10, 0],
        ),
        CallerEdge(
            "imgpipe.Transformer.apply_transform",
            "imgpipe.Scaler.scale_image",
            calls=10,
            errors=0,
            total_ns=90_000,
            bounds_ns=(1_000, 10_000, 100_000),
            counts=[0, 10, 0, 0],
        ),
    ]
    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(view_data(edges, source="report data")))
    with browser_page() as tab:
        tab.goto(html_path.as_uri())
        rows = tab.locator("tr.caller")
        assert rows.count() == 2
        first = rows.nth(0)
        assert first.get_attribute("data-caller") == "imgpipe.Rotator.rotate_image"
        assert first.locator("td").nth(4).inner_text() == "≤ 100.0 µs"
        first.click()
        detail = tab.locator("tr.detail").inner_text()
        assert "No individual spans in this input" in detail
        assert "Latency histogram" in detail
        assert tab.errors == []
