"""The callspan quickstart: trace a hot function, see who calls it.

Run it with a collector (Jaeger, Tempo, an OpenTelemetry Collector) listening on the OTLP/gRPC
endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, default ``http://localhost:4317``) and the spans go
there. With no collector it writes them as OTLP JSON lines to ``callspan-spans.jsonl`` (Jaeger's
UI opens such a file), prints which callers it saw and writes the caller view,
``callspan-spans.html`` (``python -m callspan view``).

    python examples/image_pipeline.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import where_spans_go  # noqa: E402
from imgpipe import Rotator, Scaler, make_image  # noqa: E402


def main() -> int:
    where_spans_go.start("image-pipeline")
    image = make_image(40)
    rotator, scaler = Rotator(), Scaler()
    for step in range(50):
        image = rotator.rotate_image(image, degrees=3)
        image = scaler.scale_image(image, factor=1.0 + (step % 2) * 0.01)
    return where_spans_go.finish()


if __name__ == "__main__":
    sys.exit(main())
