"""The OpenTelemetry Python SDK as the benchmarks compare callspan with, counting what it exports.

Default settings, as a user gets them: ``TracerProvider``, ``BatchSpanProcessor`` defaults,
``OTLPSpanExporter`` over gRPC. The exporter is wrapped to count the spans the processor handed
over and the receiver accepted, so that the SDK's drops (its queue full) can be reported.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
    SpanProcessor,
)


class CountingExporter(SpanExporter):
    """Wraps the OTLP exporter to count what the BatchSpanProcessor handed over (for drops)."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self.exported = 0
        self.failed = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _EndedCounter(SpanProcessor):
    """Counts the spans that ended (what was made, before any queue)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


def quiet_queue_full_log() -> None:
    """The BatchSpanProcessor logs "Queue full, dropping Span." once per dropped span; with no
    logging configured that is a line on stderr per span. Drops are counted instead."""
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)


class CountingSdk:
    """A provider exporting to ``endpoint``, its tracer, and the counts at shutdown."""

    def __init__(self, endpoint: str, service_name: str):
        quiet_queue_full_log()
        self.exporter = CountingExporter(OTLPSpanExporter(endpoint=endpoint, insecure=True))
        self.ended = _EndedCounter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor(self.ended)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(service_name)

    def shutdown(self) -> dict[str, Any]:
        """Flushes and shuts the provider down; what was made, exported, failed and dropped."""
        self.provider.shutdown()
        return {
            "spans_made": self.ended.ended,
            "spans_exported": self.exporter.exported,
            "spans_failed": self.exporter.failed,
            "spans_dropped": self.ended.ended - self.exporter.exported - self.exporter.failed,
        }
