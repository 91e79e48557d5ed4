"""Where the examples' spans go, and telling the user: a collector if one listens, else a file.

``start(service)`` names the service and, when nothing listens on the OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``, default ``http://localhost:4317``) and no exporter is chosen
(``OTEL_TRACES_EXPORTER``), switches callspan to its file exporter (``callspan-spans.jsonl``).
``finish()`` flushes, prints what was exported and where, and after a file run writes the caller
view (``python -m callspan view``), which also prints the callers it saw.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import callspan

SPAN_FILE = "callspan-spans.jsonl"
_using_file = False


def collector_listening() -> bool:
    endpoint = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317"
    )
    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:
        with socket.create_connection((url.hostname or "localhost", url.port or 4317), timeout=0.5):
            return True
    except OSError:
        return False


def start(service: str) -> None:
    """Call before the first traced call."""
    global _using_file
    # Read by callspan on first use, like every OTEL_* variable.
    os.environ.setdefault("OTEL_SERVICE_NAME", service)
    _using_file = not os.environ.get("OTEL_TRACES_EXPORTER") and not collector_listening()
    if _using_file:
        if os.path.exists(SPAN_FILE):
            os.remove(SPAN_FILE)
        callspan.configure(exporter="file", file=SPAN_FILE)


def finish() -> int:
    """Flush, say where the spans went; returns the exit status."""
    delivered = callspan.flush(timeout=10)
    stats = callspan.stats()
    print(
        f"traced calls: {stats['spans_started']}, spans exported: {stats['spans_exported']}, "
        f"dropped: {stats['spans_dropped']}"
    )
    print(
        f"spans went to {callspan.destination()}"
        + ("" if delivered else " (not all were delivered: see the warnings above)")
    )
    if not _using_file:
        return 0
    print("no collector was listening, so they were written to a file; callers seen:")
    sys.stdout.flush()
    # The same command a user runs: prints the callers and writes the HTML view.
    return subprocess.run([sys.executable, "-m", "callspan", "view", SPAN_FILE]).returncode
