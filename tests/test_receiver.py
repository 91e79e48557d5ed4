"""Tests of the test harness itself (no callspan needed).

They prove that the recording receiver decodes what a real OTLP client sends over gRPC and over
OTLP/HTTP (plain and gzip), that it keeps grpcio's 4 MiB receive limit, and that spans sent to rotel
arrive at the receiver intact. If these fail, the end-to-end tests' verdicts mean nothing.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
import tokenize
import urllib.error
import urllib.request

import grpc
import pytest
from e2e_support import SCRIPTS_DIR, marker_line
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from otlp_receiver import RecordingReceiver
from rotel import RotelAgent

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
ROOT_SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
CHILD_SPAN_ID = bytes.fromhex("0102030405060708")


def any_value(value) -> common_pb2.AnyValue:
    if isinstance(value, bool):  # before int: bool is an int
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, (list, tuple)):
        return common_pb2.AnyValue(
            array_value=common_pb2.ArrayValue(values=[any_value(v) for v in value])
        )
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=key_values(value)))
    return common_pb2.AnyValue(string_value=value)


def key_values(mapping: dict) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=key, value=any_value(value)) for key, value in mapping.items()]


SPAN_ATTRIBUTES = {
    "code.function.name": "imgpipe.Transformer.apply_transform",
    "caller.function.name": "imgpipe.Rotator.rotate_image",
    "caller.line.number": 31,
    "ratio": 0.25,
    "cached": True,
    "sizes": [640, 480],
    "tags": ["a", "b"],
}
RESOURCE_ATTRIBUTES = {"service.name": "harness-test", "telemetry.sdk.name": "callspan"}


def sample_request(span_attributes=None) -> trace_service_pb2.ExportTraceServiceRequest:
    """Two spans (root + child with an exception event) under one resource and scope."""
    root = trace_pb2.Span(
        trace_id=TRACE_ID,
        span_id=ROOT_SPAN_ID,
        name="Rotator.rotate_image",
        kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=1_000,
        end_time_unix_nano=5_000,
    )
    child = trace_pb2.Span(
        trace_id=TRACE_ID,
        span_id=CHILD_SPAN_ID,
        parent_span_id=ROOT_SPAN_ID,
        name="Transformer.apply_transform",
        kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=2_000,
        end_time_unix_nano=3_000,
        attributes=key_values(span_attributes or SPAN_ATTRIBUTES),
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom"),
        events=[
            trace_pb2.Span.Event(
                name="exception",
                time_unix_nano=2_500,
                attributes=key_values(
                    {"exception.type": "ValueError", "exception.message": "boom"}
                ),
            )
        ],
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=key_values(RESOURCE_ATTRIBUTES)),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="callspan", version="0.1.0"),
                        spans=[root, child],
                    )
                ],
            )
        ]
    )


def export_over_grpc(endpoint: str, request, metadata=(), compression=None):
    target = endpoint.removeprefix("http://")
    with grpc.insecure_channel(target, compression=compression) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        return stub.Export(request, metadata=list(metadata), timeout=10)


def export_over_http(url: str, request, gzip_body=False, headers=None):
    body = request.SerializeToString()
    all_headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
    if gzip_body:
        body = gzip.compress(body)
        all_headers["Content-Encoding"] = "gzip"
    http_request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
    with urllib.request.urlopen(http_request, timeout=10) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


def assert_sample_spans_decoded(spans):
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"Rotator.rotate_image", "Transformer.apply_transform"}
    root, child = (
        by_name["Rotator.rotate_image"],
        by_name["Transformer.apply_transform"],
    )

    assert root.parent_span_id is None
    assert root.trace_id == child.trace_id == TRACE_ID.hex()
    assert child.parent_span_id == root.span_id == ROOT_SPAN_ID.hex()
    assert child.span_id == CHILD_SPAN_ID.hex()
    assert child.kind == "SPAN_KIND_INTERNAL"
    assert (child.start_time_unix_nano, child.end_time_unix_nano) == (2_000, 3_000)
    assert (child.status_code, child.status_message) == ("STATUS_CODE_ERROR", "boom")
    assert root.status_code == "STATUS_CODE_UNSET"
    assert child.attributes == SPAN_ATTRIBUTES
    assert [event.name for event in child.events] == ["exception"]
    assert child.event("exception").attributes == {
        "exception.type": "ValueError",
        "exception.message": "boom",
    }
    assert child.resource_attributes == RESOURCE_ATTRIBUTES
    assert (child.scope_name, child.scope_version) == ("callspan", "0.1.0")


def test_grpc_export_is_recorded_with_metadata(receiver):
    response = export_over_grpc(
        receiver.endpoint, sample_request(), metadata=[("x-tenant", "imaging")]
    )

    assert isinstance(response, trace_service_pb2.ExportTraceServiceResponse)
    spans = receiver.wait_for_spans(2, timeout=5)
    assert_sample_spans_decoded(spans)
    assert {span.transport for span in spans} == {"grpc"}
    [request] = receiver.requests()
    assert request.transport == "grpc"
    assert request.header("x-tenant") == "imaging"
    assert request.header("X-Tenant") == "imaging"  # lookup is case-insensitive
    assert request.header("user-agent").startswith("grpc-python")
    assert request.encoded_size == sample_request().ByteSize()


def test_grpc_export_with_gzip_compression(receiver):
    export_over_grpc(receiver.endpoint, sample_request(), compression=grpc.Compression.Gzip)

    assert_sample_spans_decoded(receiver.wait_for_spans(2, timeout=5))


def test_anyvalue_kinds_are_decoded(receiver):
    attributes = {
        "s": "text",
        "i": -7,
        "d": 1.5,
        "b": False,
        "raw": b"\x00\x01",
        "mixed": [1, "two", 3.0, True],
        "nested": {"inner": [1, 2], "name": "x"},
    }
    export_over_grpc(receiver.endpoint, sample_request(span_attributes=attributes))

    spans = receiver.wait_for_spans(2, timeout=5)
    child = next(span for span in spans if span.name == "Transformer.apply_transform")
    assert child.attributes == attributes


def test_grpc_keeps_default_4mib_receive_limit(receiver):
    oversized = sample_request(span_attributes={"blob": "x" * (5 * 1024 * 1024)})

    with pytest.raises(grpc.RpcError) as raised:
        export_over_grpc(receiver.endpoint, oversized)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert receiver.requests() == []


@pytest.mark.parametrize("gzip_body", [False, True], ids=["plain", "gzip"])
def test_http_protobuf_export_is_recorded_with_headers(receiver, gzip_body):
    status, content_type, body = export_over_http(
        receiver.http_traces_url,
        sample_request(),
        gzip_body=gzip_body,
        headers={"X-Tenant": "imaging"},
    )

    assert (status, content_type) == (200, "application/x-protobuf")
    trace_service_pb2.ExportTraceServiceResponse.FromString(body)  # a valid (empty) response
    spans = receiver.wait_for_spans(2, timeout=5)
    assert_sample_spans_decoded(spans)
    [request] = receiver.requests()
    assert request.transport == "http"
    assert request.header("x-tenant") == "imaging"
    assert request.header("content-encoding") == ("gzip" if gzip_body else None)
    assert request.encoded_size == sample_request().ByteSize()


def test_http_rejects_other_content_types_and_paths(receiver):
    with pytest.raises(urllib.error.HTTPError) as wrong_type:
        urllib.request.urlopen(
            urllib.request.Request(
                receiver.http_traces_url,
                data=b"{}",
                headers={"Content-Type": "application/json"},
                method="POST",
            ),
            timeout=10,
        )
    with pytest.raises(urllib.error.HTTPError) as wrong_path:
        export_over_http(receiver.http_endpoint + "/v1/logs", sample_request())

    assert wrong_type.value.code == 415
    assert wrong_path.value.code == 404
    assert receiver.requests() == []


def test_http_is_off_by_default():
    with RecordingReceiver() as grpc_only:
        assert grpc_only.http_port is None
        with pytest.raises(RuntimeError):
            _ = grpc_only.http_endpoint


def test_clear_and_wait_timeout(receiver):
    export_over_grpc(receiver.endpoint, sample_request())
    receiver.wait_for_spans(2, timeout=5)

    receiver.clear()

    assert receiver.spans() == []
    with pytest.raises(AssertionError, match="expected at least 1 spans"):
        receiver.wait_for_spans(1, timeout=0.2)


def test_stop_releases_the_port():
    receiver = RecordingReceiver(http=True)
    receiver.stop()
    receiver.stop()  # idempotent

    with pytest.raises(grpc.RpcError) as raised:
        export_over_grpc(receiver.endpoint, sample_request())
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_span_through_rotel_grpc_arrives_intact(receiver, rotel_forwarding_to_receiver):
    export_over_grpc(rotel_forwarding_to_receiver.grpc_endpoint, sample_request())

    spans = receiver.wait_for_spans(2, timeout=15)
    assert_sample_spans_decoded(spans)
    assert {span.transport for span in spans} == {"grpc"}


def test_span_through_rotel_http_arrives_intact(receiver, rotel_forwarding_to_receiver):
    status, _, _ = export_over_http(
        rotel_forwarding_to_receiver.http_endpoint + "/v1/traces",
        sample_request(),
        gzip_body=True,
    )

    assert status == 200
    assert_sample_spans_decoded(receiver.wait_for_spans(2, timeout=15))


def test_rotel_blackhole_accepts_and_discards(receiver):
    with RotelAgent(exporter="blackhole") as blackhole:
        response = export_over_grpc(blackhole.grpc_endpoint, sample_request())
        assert isinstance(response, trace_service_pb2.ExportTraceServiceResponse)
        assert blackhole.is_running()
    assert not blackhole.is_running()
    assert receiver.requests() == []


def test_rotel_start_failure_reports_its_output():
    agent = RotelAgent(
        exporter="otlp",
        exporter_endpoint="http://127.0.0.1:1",
        extra_args=["--no-such-flag"],
    )
    with pytest.raises(Exception, match="no-such-flag"):
        agent.start()
    agent.stop()


def test_scripts_run_from_a_clean_environment(run_script, monkeypatch):
    # A developer's OTEL_/CALLSPAN_ variables must not reach the children; the harness sets its own.
    monkeypatch.setenv("CALLSPAN_SHOULD_NOT_LEAK", "1")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "leaked")

    completed = run_script(
        "import json, os, sys\n"
        "print(json.dumps(sorted(k for k in os.environ if k.startswith(('OTEL_', 'CALLSPAN_')))))\n"
        "print(json.dumps(sys.path))\n"
    )

    exported_names, child_path = completed.stdout.splitlines()
    assert json.loads(exported_names) == [
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    assert str(SCRIPTS_DIR) in json.loads(child_path)


def test_run_script_reports_a_failing_child(run_script):
    with pytest.raises(pytest.fail.Exception, match="exited with 3"):
        run_script("import sys\nsys.exit(3)\n")
    assert run_script("import sys\nsys.exit(3)\n", check=False).returncode == 3


def test_call_markers_sit_on_single_line_calls():
    # Expected caller lines come from "# CALL:<name>" comments; a formatter that wraps a marked call
    # over several lines would silently move the line Python reports. Catch that here.
    for script in sorted(SCRIPTS_DIR.glob("*.py")):
        source = script.read_text()
        tree = ast.parse(source)
        one_line = {
            kind: {
                node.lineno
                for node in ast.walk(tree)
                if isinstance(node, node_type) and node.lineno == node.end_lineno
            }
            for kind, node_type in (("CALL", ast.Call), ("RAISE", ast.Raise))
        }
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        for token in tokens:
            marker = re.match(r"#\s*(CALL|RAISE):(\w+)", token.string)
            if token.type == tokenize.COMMENT and marker:
                line = token.start[0]
                assert line in one_line[marker.group(1)], f"{script.name}:{line} {token.string}"
                assert marker_line(script, f"{marker.group(1)}:{marker.group(2)}") == line
