"""Debian's Chromium, headless, driven by Playwright for Python: the browser of the view tests.

Playwright's own browser download cannot work here (no network beyond package registries), so
the tests launch the system ``/usr/bin/chromium`` (``apt-get install chromium``; the Makefile
installs it when missing). Without it, or without the ``playwright`` package, the tests skip
and say which one is missing and how to install it.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

CHROMIUM_ENV = "TEST_CHROMIUM"  # path to a Chromium binary, if not /usr/bin/chromium
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip(
            f"no Chromium at {path}: install it with `apt-get install -y chromium` "
            f"(`make venv` does, as root) or set {CHROMIUM_ENV}"
        )
    return path


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 900):
    """A fresh page in headless Chromium; page errors and console errors fail the test."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed: pip install -r requirements-dev.txt",
    )
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []  # what the page reported: asserted empty by the tests
            page.on("pageerror", lambda error: page.errors.append(f"page error: {error}"))
            page.on(
                "console",
                lambda message: (
                    page.errors.append(f"console: {message.text}")
                    if message.type == "error"
                    else None
                ),
            )
            page.requests = []
            page.on("request", lambda request: page.requests.append(request.url))
            yield page
        finally:
            browser.close()
