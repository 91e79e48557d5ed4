"""OpenTelemetry API interop: callspan spans join the trace of the current OTel span."""

from __future__ import annotations

import os
import sys

import pytest
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


def test_each_root_call_joins_the_opentelemetry_span_current_at_that_moment(receiver, run_script):
    facts = parse_output(run_script("otel_context_changes.py").stdout).facts
    expected, seen = facts["expected"], facts["seen"]
    calls = sum(len(ids) for ids in seen.values())
    spans = {s.span_id: s for s in receiver.wait_for_spans(calls, timeout=20)}
    assert len(spans) == calls
    new_traces = set()
    for label, span_ids in seen.items():
        assert len(span_ids) == 2, label
        for span_id in span_ids:
            span = spans[span_id]
            if expected[label] is None:
                assert span.parent_span_id is None, label
                new_traces.add(span.trace_id)
            else:
                assert [span.trace_id, span.parent_span_id] == expected[label], label
    # Outside any OpenTelemetry span every root call starts its own trace.
    assert len(new_traces) == 8
    # Where callspan reads interpreter structs (every supported CPython unless built with
    # CALLSPAN_FRAME_PUBLIC_API=1, which 3.11+ obey), the answer is keyed by the thread's mapping.
    public_api = os.environ.get("CALLSPAN_FRAME_PUBLIC_API") == "1" and sys.version_info >= (3, 11)
    assert facts["route"] == ("contextvar" if public_api else "mapping")


@pytest.mark.parametrize(
    "calls_before, during_import",
    [(1, False), (100, False), (255, False), (256, False), (1, True)],
)
def test_opentelemetry_imported_after_traced_calls_is_joined_at_once(
    receiver, run_script, calls_before, during_import
):
    # Issue 12, item 8: callspan looked for OpenTelemetry only every 256th root call, so after
    # an import that followed 1-255 traced calls, the next spans started traces of their own.
    # A traced call made while the import runs (names not defined yet) must not make callspan
    # give up on OpenTelemetry either.
    args = [calls_before, "during-import"] if during_import else [calls_before]
    output = parse_output(run_script("otel_late_import.py", args=args).stdout)
    facts, stats = output.facts, output.stats
    assert facts["imported_at_start"] == []
    total = calls_before + 1 + during_import
    assert stats["spans_sampled"] == stats["spans_exported"] == total, stats
    spans = receiver.wait_for_spans(total, timeout=20)
    assert len(spans) == total
    if during_import:
        assert facts["during_import_initializing"] is True
        (during,) = [s for s in spans if s.name == "during_the_import"]
        assert during.parent_span_id is None
    (inside,) = [s for s in spans if s.name == "inside_the_otel_span"]
    assert (inside.trace_id, inside.parent_span_id) == (facts["otel_trace"], facts["otel_span"])
    before = [s for s in spans if s.name == "before_the_import"]
    assert len(before) == calls_before
    assert all(s.parent_span_id is None and s.trace_id != facts["otel_trace"] for s in before)
