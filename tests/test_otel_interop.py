"""OpenTelemetry API interop: callspan spans join the trace of the current OTel span."""

from __future__ import annotations

from e2e_support import parse_output


def test_callspan_spans_join_the_current_opentelemetry_span(receiver, run_script):
    facts = parse_output(run_script("otel_interop.py").stdout).facts
    spans = receiver.wait_for_spans(5, timeout=20)
    (handler,) = [s for s in spans if s.name == "handle_request"]
    assert handler.trace_id == facts["otel_trace"]
    assert handler.parent_span_id == facts["otel_span"]
    inside = [s for s in spans if s.name == "apply_transform" and s.trace_id == facts["otel_trace"]]
    assert len(inside) == 3
    assert all(s.parent_span_id == handler.span_id for s in inside)
    (outside,) = [s for s in spans if s.trace_id != facts["otel_trace"]]
    assert outside.parent_span_id is None
