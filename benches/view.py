"""How fast ``python -m callspan view`` turns many spans into a page, and how fast it opens.

A child process makes ``--spans`` traced calls (default 100,000: three traced functions, 30
callers) with the file exporter, as a user would; then this script times, in this process,
reading + aggregating + writing the page (``callspan._view.write_view``), and, in Debian's headless
Chromium driven by Playwright, the page's load until its tables are drawn, and a click on the
busiest caller until its slowest calls show.

    python benches/view.py [--spans N] [--json PATH] [--screenshot PNG] [--smoke]

``--screenshot`` instead writes the quickstart's page (examples/image_pipeline.py) and keeps a
picture of it with the busiest caller opened (docs/view.png is made so: ``make view-png``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_ARGS  # noqa: E402  (tests/browser.py)
from callspan._view import write_view  # noqa: E402

WORKLOAD = """
import sys
import callspan

@callspan.trace
def parse(n):
    return n + 1

@callspan.trace
def score(n):
    return n * 2

@callspan.trace
def store(n):
    return n

targets = [parse, score, store]
callers = []
for index in range(30):
    namespace = {"targets": targets, "target": targets[index % 3]}
    exec(f"def caller_{index}(n):\\n    return target(n)\\n", namespace)
    callers.append(namespace[f"caller_{index}"])
spans = int(sys.argv[1])
for i in range(spans):
    callers[(i * 7) % 30](i)
callspan.flush(60)
print(callspan.stats()["spans_exported"])
"""


def make_spans(count: int, path: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLSPAN_"))}
    env.update(
        CALLSPAN_EXPORTER="file",
        CALLSPAN_FILE=str(path),
        OTEL_BSP_MAX_QUEUE_SIZE=str(count + 1),
        OTEL_SERVICE_NAME="view-bench",
    )
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(count)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return int(done.stdout.split()[-1])


def open_in_chromium(html: Path, screenshot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        started = time.perf_counter()
        page.goto(html.as_uri())
        page.locator("tr.caller").first.wait_for()
        loaded = time.perf_counter()
        page.locator("tr.caller").first.click()
        page.locator("tr.detail").wait_for()
        clicked = time.perf_counter()
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"load_s": loaded - started, "click_s": clicked - loaded}


def screenshot(target: Path) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLSPAN_"))}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: file + page
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "image_pipeline.py")],
            cwd=workdir,
            env=env,
            check=True,
            timeout=300,
        )
        open_in_chromium(Path(workdir) / "callspan-spans.html", screenshot=target)
    print(f"wrote {target}")


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--smoke", action="store_true", help="1,000 spans: proves it runs")
    args = parser.parse_args(argv)
    if args.screenshot:
        screenshot(args.screenshot)
        return 0
    count = 1_000 if args.smoke else args.spans
    with tempfile.TemporaryDirectory() as workdir:
        spans_path = Path(workdir) / "spans.jsonl"
        exported = make_spans(count, spans_path)
        started = time.perf_counter()
        html, data = write_view(spans_path)
        built = time.perf_counter() - started
        result = {
            "spans": data["span_count"],
            "spans_exported": exported,
            "input_mib": spans_path.stat().st_size / 2**20,
            "page_kib": html.stat().st_size / 2**10,
            "write_view_s": built,
            **open_in_chromium(html),
        }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
