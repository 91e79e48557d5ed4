"""Coroutines, generators and async generators: one span per call, right parents, right ends."""

from __future__ import annotations

import sys
from collections import defaultdict

from e2e_support import describe, parse_output


def test_async_generators_and_coroutines(receiver, run_script):
    completed = run_script("async_tasks.py")
    output = parse_output(completed.stdout)
    facts = output.facts
    assert output.stats["spans_dropped"] == 0, output.stats
    spans = receiver.wait_for_spans(output.stats["spans_exported"], timeout=20)
    by_id = {span.span_id: span for span in spans}
    children = defaultdict(list)
    for span in spans:
        if span.parent_span_id:
            children[span.parent_span_id].append(span)

    # handler: the root of every fetch, whichever way the fetch was scheduled.
    (handler,) = [s for s in spans if s.name == "handler"]
    assert handler.parent_span_id is None
    fetches = [s for s in spans if s.name == "fetch"]
    fetch_count = 4 if sys.version_info >= (3, 11) else 3
    assert len(fetches) == fetch_count, describe(spans)
    assert facts["handler_results"] == [1, 2, 0, 3][:fetch_count]
    for fetch in fetches:
        assert fetch.parent_span_id == handler.span_id
        assert fetch.trace_id == handler.trace_id
        assert fetch.attributes["caller.function.name"] == "__main__.handler"
        # The interleaved tasks never cross: each fetch owns exactly leaf-i and thread-leaf-i.
        names = sorted(c.name for c in children[fetch.span_id])
        assert len(names) == 2, describe(spans)
        i = names[0].rsplit("-", 1)[1]
        assert names == [f"leaf-{i}", f"thread-leaf-{i}"], describe(spans)
        (in_thread,) = [c for c in children[fetch.span_id] if c.name.startswith("thread-")]
        assert in_thread.attributes["thread.name"] != "MainThread"
        # A coroutine span covers its awaited lifetime: its children lie within it.
        for child in children[fetch.span_id]:
            assert fetch.start_time_unix_nano <= child.start_time_unix_nano
            assert child.end_time_unix_nano <= fetch.end_time_unix_nano

    (sleeper,) = [s for s in spans if s.name == "sleeper"]
    assert facts["cancel_propagated"] is True
    assert sleeper.status_code == "STATUS_CODE_ERROR"
    assert "cancel" in sleeper.status_message.lower()
    assert sleeper.events[0].attributes["exception.type"].endswith("CancelledError")

    (failing,) = [s for s in spans if s.name == "failing"]
    assert facts["error_propagated"] is True
    assert failing.status_code == "STATUS_CODE_ERROR"
    assert failing.events[0].attributes["exception.type"] == "KeyError"

    # An async generator: one span, its leaf calls inside it.
    (stream,) = [s for s in spans if s.name == "stream"]
    assert facts["streamed"] == [0, 1, 2]
    assert sorted(c.name for c in children[stream.span_id]) == ["leaf-0", "leaf-1", "leaf-2"]
    assert stream.status_code != "STATUS_CODE_ERROR"

    # Generators: one exhausted (2 leaves), one closed after its first item (1 leaf, no error).
    numbers = sorted(
        (s for s in spans if s.name == "numbers"), key=lambda s: len(children[s.span_id])
    )
    assert [len(children[s.span_id]) for s in numbers] == [1, 2]
    assert all(s.status_code != "STATUS_CODE_ERROR" for s in numbers)
    assert all(s.parent_span_id is None for s in numbers)
    assert by_id  # every span above was looked up among those received
