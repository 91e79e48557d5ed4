"""Export requests stay under the receiver's 4 MiB gRPC limit: big batches are split, none lost."""

from __future__ import annotations

from e2e_support import parse_output


def test_batches_over_4_mib_are_split_and_all_arrive(receiver, run_script):
    completed = run_script(
        "large_spans.py",
        # One big batch: everything is queued before the first scheduled export.
        env={"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512"},
    )
    output = parse_output(completed.stdout)
    calls = output.facts["calls"]
    assert output.stats["spans_exported"] == calls, output.stats
    assert output.stats["spans_dropped"] == 0, output.stats

    spans = receiver.wait_for_spans(calls, timeout=20)
    assert len(spans) == calls
    assert all(
        len(span.events[0].attributes["exception.message"]) == output.facts["message_length"]
        for span in spans
    )
    requests = receiver.requests()
    assert len(requests) >= 2, "an 8 MB batch must be split into several requests"
    assert max(request.encoded_size for request in requests) < 4 * 1024 * 1024
