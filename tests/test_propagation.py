"""W3C traceparent helpers: continuing a trace across processes and per-task remote parents."""

from __future__ import annotations

import callspan
import pytest
from e2e_support import parse_output


def test_traceparent_continues_the_trace_across_processes(receiver, run_script):
    facts = parse_output(run_script("propagation.py").stdout).facts
    spans = receiver.wait_for_spans(5, timeout=20)
    (client,) = [s for s in spans if s.name == "client"]
    assert facts["sent"] == f"00-{client.trace_id}-{client.span_id}-01"
    child_spans = [s for s in spans if s.name == "server" and s.trace_id == client.trace_id]
    assert len(child_spans) == 1
    (child,) = child_spans
    assert child.parent_span_id == client.span_id
    # Two tasks at once, each under its own remote parent.
    for key in ("a", "b"):
        _, trace_id, span_id, _ = facts[key].split("-")
        (span,) = [s for s in spans if s.trace_id == trace_id]
        assert span.parent_span_id == span_id
    # An invalid header starts a new trace.
    invalid = [
        s
        for s in spans
        if s.name == "server" and s.parent_span_id is None and s.trace_id != client.trace_id
    ]
    assert len(invalid) == 1
    assert facts["extracted"].startswith("RemoteSpan(")


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-1111111111111111-01",  # zero trace id
        "00-11111111111111111111111111111111-0000000000000000-01",  # zero span id
        "ff-11111111111111111111111111111111-1111111111111111-01",  # invalid version
        "00-11111111111111111111111111111111-1111111111111111-01-extra",  # 00 has no extra
        "00-1111111111111111111111111111111G-1111111111111111-01",  # not hex
        "",
    ],
)
def test_invalid_traceparent_is_ignored(value):
    assert callspan.extract(value) is None
    assert callspan.extract({"traceparent": value}) is None


def test_valid_traceparent_round_trips():
    value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    remote = callspan.extract({"traceparent": value})
    assert remote.traceparent == value
    assert remote.sampled is False
    assert callspan.extract("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future")
    assert callspan.inject() == {}  # outside a traced call: nothing to inject
