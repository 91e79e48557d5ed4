"""Every example in examples/ runs with one command, and its spans arrive where it said.

Each example is run as a user runs it (``python examples/X.py``) in a child process; with the
recording receiver listening on the OTLP endpoint, the spans must arrive there with the callers
the example's docstring promises. Without a collector the quickstart writes the file and the
caller view.
"""

from __future__ import annotations

import json
from pathlib import Path

from e2e_support import named
from test_view import page_data

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def callers_of(spans, function: str) -> dict[str, int]:
    seen: dict[str, int] = {}
    for span in spans:
        if span.attributes.get("code.function.name") == function:
            caller = span.attributes["caller.function.name"]
            seen[caller] = seen.get(caller, 0) + 1
    return seen


def run_example(run_script, receiver, name: str, spans: int):
    completed = run_script(EXAMPLES / name)
    assert f"spans went to OTLP/gRPC to {receiver.endpoint}" in completed.stdout
    assert f"spans exported: {spans}, dropped: 0" in completed.stdout
    return receiver.wait_for_spans(spans), completed


def test_image_pipeline_sends_to_the_collector(run_script, receiver):
    spans, _ = run_example(run_script, receiver, "image_pipeline.py", 100)
    assert callers_of(spans, "imgpipe.Transformer.apply_transform") == {
        "imgpipe.Rotator.rotate_image": 50,
        "imgpipe.Scaler.scale_image": 50,
    }
    assert {span.attributes["caller.class.name"] for span in spans} == {
        "imgpipe.Rotator",
        "imgpipe.Scaler",
    }
    assert {span.resource_attributes["service.name"] for span in spans} == {"image-pipeline"}


def test_image_pipeline_without_a_collector_writes_the_file_and_the_view(run_script, tmp_path):
    # Port 9 (discard) on loopback: nothing listens, so the example falls back to the file.
    completed = run_script(
        EXAMPLES / "image_pipeline.py", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert "spans went to OTLP JSON lines in callspan-spans.jsonl" in completed.stdout
    assert "50 x from imgpipe.Rotator.rotate_image" in completed.stdout
    page = tmp_path / "callspan-spans.html"
    assert f"wrote {page}" in completed.stdout
    requests = [json.loads(line) for line in (tmp_path / "callspan-spans.jsonl").open()]
    exported = [
        span
        for request in requests
        for resource_spans in request["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    ]
    assert len(exported) == 100
    (function,) = page_data(page.read_text())["functions"]
    assert {caller["caller"] for caller in function["callers"]} == {
        "imgpipe.Rotator.rotate_image",
        "imgpipe.Scaler.scale_image",
    }


def test_async_service_parents_follow_tasks(run_script, receiver):
    spans, _ = run_example(run_script, receiver, "async_service.py", 90)
    assert callers_of(spans, "__main__.fetch_user") == {
        "__main__.Service.handle_profile": 20,
        "__main__.Service.handle_feed": 10,
    }
    assert callers_of(spans, "__main__.fetch_posts") == {"__main__.Service.handle_feed": 30}
    by_id = {span.span_id: span for span in spans}
    for span in named(spans, "fetch_posts") + named(spans, "fetch_user"):
        parent = by_id[span.parent_span_id]
        assert parent.attributes["code.function.name"] == span.attributes["caller.function.name"]
        assert parent.trace_id == span.trace_id


def test_thread_pool_job_names_threads_and_records_failures(run_script, receiver):
    spans, completed = run_example(run_script, receiver, "thread_pool_job.py", 46)
    assert "6 needed a retry" in completed.stdout
    assert callers_of(spans, "__main__.resize_tile") == {
        "__main__.TileJob.process_tile": 40,
        "__main__.TileJob.retry_tile": 6,
    }
    assert {span.attributes["thread.name"] for span in spans} <= {f"tiles_{n}" for n in range(4)}
    failed = [span for span in spans if span.status_code == "STATUS_CODE_ERROR"]
    assert len(failed) == 6
    assert all(
        span.event("exception").attributes["exception.type"].endswith("TileError")
        for span in failed
    )


def test_web_app_requests_are_parents_and_join_the_clients_trace(run_script, receiver):
    spans, _ = run_example(run_script, receiver, "web_app.py", 80)
    requests = named(spans, "http.request")
    assert len(requests) == 20
    joined = [span for span in requests if span.parent_span_id == "00f067aa0ba902b7"]
    assert len(joined) == 10
    assert {span.trace_id for span in joined} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    request_ids = {span.span_id for span in requests}
    hot = named(spans, "PriceBook.lookup_price") + named(spans, "format_money")
    assert len(hot) == 60
    assert all(span.parent_span_id in request_ids for span in hot)
    assert callers_of(spans, "__main__.PriceBook.lookup_price") == {
        "__main__.quote": 10,
        "__main__.basket": 30,
    }


def test_profile_mode_traces_the_undecorated_program(receiver, tmp_path):
    import subprocess
    import sys

    from e2e_support import script_env

    done = subprocess.run(
        [sys.executable, "-m", "callspan", "run", str(EXAMPLES / "profile_mode.py")],
        env=script_env(receiver.endpoint, {}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "checksum" in done.stdout
    assert f"spans went to OTLP/gRPC to {receiver.endpoint}" in done.stdout
    # 25 x (run_pipeline's 2 callees + apply_transform twice), main and run_pipeline once each.
    spans = receiver.wait_for_spans(25 * 4 + 2)
    assert callers_of(spans, "__main__.Transformer.apply_transform") == {
        "__main__.Rotator.rotate_image": 25,
        "__main__.Scaler.scale_image": 25,
    }
    names = {span.attributes["code.function.name"] for span in spans}
    assert names == {
        "__main__.main",
        "__main__.run_pipeline",
        "__main__.Rotator.rotate_image",
        "__main__.Scaler.scale_image",
        "__main__.Transformer.apply_transform",
    }
