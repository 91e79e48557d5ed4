"""``CALLSPAN_OTEL_CONTEXT``: makes the running callspan span the OpenTelemetry API's current
span, so that spans OpenTelemetry code starts inside a traced call nest under it.

Called from the native hot path around each sampled call when enabled; costs one OpenTelemetry
context attach and detach per call, which is why it is opt-in.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context, trace

_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)


def attach(trace_id: int, span_id: int) -> Any:
    span = trace.NonRecordingSpan(
        trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
    )
    return context.attach(trace.set_span_in_context(span))


def detach(token: Any) -> None:
    context.detach(token)
