"""The callspan quickstart: trace a hot function, see who calls it.

Run it with a collector (Jaeger, Tempo, an OpenTelemetry Collector) listening on the OTLP/gRPC
endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, default ``http://localhost:4317``) and the spans go
there. With no collector it writes them as OTLP JSON lines to ``callspan-spans.jsonl`` (Jaeger's
UI opens such a file) and prints which callers it saw.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections import Counter
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import callspan  # noqa: E402
from imgpipe import Rotator, Scaler, make_image  # noqa: E402

SPAN_FILE = "callspan-spans.jsonl"


def collector_listening() -> bool:
    endpoint = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317"
    )
    url = urlsplit(endpoint)
    try:
        with socket.create_connection((url.hostname or "localhost", url.port or 4317), timeout=0.5):
            return True
    except OSError:
        return False


def callers_in(path: str) -> Counter:
    """Counts (callee, caller, line, class) in an OTLP JSON lines file."""
    seen: Counter = Counter()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            for resource_spans in json.loads(line)["resourceSpans"]:
                for scope_spans in resource_spans["scopeSpans"]:
                    for span in scope_spans["spans"]:
                        attrs = {a["key"]: a["value"] for a in span["attributes"]}
                        caller = attrs["caller.function.name"]["stringValue"]
                        line_no = attrs["caller.line.number"]["intValue"]
                        cls = attrs.get("caller.class.name", {}).get("stringValue", "-")
                        seen[(span["name"], caller, line_no, cls)] += 1
    return seen


def main() -> None:
    # Read by callspan on first use, like every OTEL_* variable.
    os.environ.setdefault("OTEL_SERVICE_NAME", "image-pipeline")
    using_file = not os.environ.get("OTEL_TRACES_EXPORTER") and not collector_listening()
    if using_file:
        if os.path.exists(SPAN_FILE):
            os.remove(SPAN_FILE)
        callspan.configure(exporter="file", file=SPAN_FILE)

    image = make_image(40)
    rotator, scaler = Rotator(), Scaler()
    for step in range(50):
        image = rotator.rotate_image(image, degrees=3)
        image = scaler.scale_image(image, factor=1.0 + (step % 2) * 0.01)

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
    if using_file:
        print("no collector was listening, so they were written to a file; callers seen:")
        for (name, caller, line, cls), n in sorted(callers_in(SPAN_FILE).items()):
            print(f"  {n:3d} x {name} <- {caller} (line {line}, {cls})")


if __name__ == "__main__":
    main()
