"""A recording OTLP trace receiver for tests.

It is a real server built on the official ``opentelemetry-proto`` messages and ``grpcio``:
it listens on 127.0.0.1 (ephemeral ports), implements ``TraceService/Export`` over gRPC and,
when asked, ``POST /v1/traces`` over OTLP/HTTP with protobuf bodies. Every request is kept
exactly as it arrived, together with its gRPC metadata or HTTP headers, so tests assert on
what was on the wire and never on callspan's internal state.

Typical use::

    with RecordingReceiver() as receiver:
        ...  # point an exporter at receiver.endpoint
        spans = receiver.wait_for_spans(3, timeout=10)
        assert spans[0].attributes["caller.function.name"] == "imgpipe.Rotator.rotate_image"
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

LOOPBACK = "127.0.0.1"
OTLP_HTTP_TRACES_PATH = "/v1/traces"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"

# Readable names for the enums, so that assertion failures show "SPAN_KIND_INTERNAL", not "1".
SPAN_KIND_INTERNAL = "SPAN_KIND_INTERNAL"
STATUS_CODE_UNSET = "STATUS_CODE_UNSET"
STATUS_CODE_OK = "STATUS_CODE_OK"
STATUS_CODE_ERROR = "STATUS_CODE_ERROR"


@dataclass
class ReceivedRequest:
    """One ExportTraceServiceRequest as it arrived, with how it arrived."""

    transport: str  # "grpc" or "http"
    request: trace_service_pb2.ExportTraceServiceRequest
    # gRPC invocation metadata or HTTP headers, keys lower-cased, in arrival order.
    headers: list[tuple[str, str]]
    encoded_size: int  # bytes of the protobuf message (after HTTP gzip decoding)
    received_at: float  # time.time() on arrival

    def header(self, name: str) -> str | None:
        """First value of a header / metadata key (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


@dataclass
class ReceivedEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@dataclass
class ReceivedSpan:
    """A span flattened out of ResourceSpans/ScopeSpans, with plain Python values."""

    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str | None  # 16 hex digits, None for a root span
    kind: str  # enum name, e.g. "SPAN_KIND_INTERNAL"
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: str  # enum name, e.g. "STATUS_CODE_ERROR"
    status_message: str
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    resource_attributes: dict[str, Any]
    scope_name: str
    scope_version: str
    trace_state: str = ""
    links: list[dict[str, Any]] = field(default_factory=list)
    transport: str = ""  # transport of the request it came in

    def event(self, name: str) -> ReceivedEvent | None:
        """The first event with this name, or None."""
        return next((event for event in self.events if event.name == name), None)


def decode_any_value(value: common_pb2.AnyValue) -> Any:
    """AnyValue → str / bool / int / float / bytes / list / dict (None when unset)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def decode_attributes(key_values) -> dict[str, Any]:
    return {kv.key: decode_any_value(kv.value) for kv in key_values}


def _hex_or_none(raw: bytes) -> str | None:
    return raw.hex() if raw else None


def flatten_request(request: trace_service_pb2.ExportTraceServiceRequest, transport: str = ""):
    """All spans of one request, each carrying its resource and scope."""
    spans = []
    for resource_spans in request.resource_spans:
        resource_attributes = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=_hex_or_none(span.parent_span_id),
                        kind=trace_pb2.Span.SpanKind.Name(span.kind),
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        status_code=trace_pb2.Status.StatusCode.Name(span.status.code),
                        status_message=span.status.message,
                        attributes=decode_attributes(span.attributes),
                        events=[
                            ReceivedEvent(
                                name=event.name,
                                time_unix_nano=event.time_unix_nano,
                                attributes=decode_attributes(event.attributes),
                            )
                            for event in span.events
                        ],
                        resource_attributes=resource_attributes,
                        scope_name=scope_spans.scope.name,
                        scope_version=scope_spans.scope.version,
                        trace_state=span.trace_state,
                        links=[
                            {
                                "trace_id": link.trace_id.hex(),
                                "span_id": link.span_id.hex(),
                                "attributes": decode_attributes(link.attributes),
                            }
                            for link in span.links
                        ],
                        transport=transport,
                    )
                )
    return spans


def _count_spans(requests: list[ReceivedRequest]) -> int:
    return sum(
        len(scope_spans.spans)
        for received in requests
        for resource_spans in received.request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: RecordingReceiver):
        self._receiver = receiver

    def Export(self, request, context):
        headers = [
            (key.lower(), _metadata_text(value)) for key, value in context.invocation_metadata()
        ]
        self._receiver._record("grpc", request, headers, request.ByteSize())
        return trace_service_pb2.ExportTraceServiceResponse()


def _metadata_text(value: str | bytes) -> str:
    # Binary metadata ("-bin" keys) arrives as bytes; keep everything as text for easy asserts.
    return value.hex() if isinstance(value, bytes) else value


class _OtlpHttpHandler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so that exporters may keep the connection alive between batches.
    protocol_version = "HTTP/1.1"
    server: _OtlpHttpServer

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.split("?", 1)[0] != OTLP_HTTP_TRACES_PATH:
            return self._reply(404, b"not found", "text/plain")
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != PROTOBUF_CONTENT_TYPE:
            # OTLP/JSON is not implemented here; tell the client clearly rather than guess.
            return self._reply(415, b"only application/x-protobuf is supported", "text/plain")
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding not in ("", "identity"):
                return self._reply(415, b"unsupported Content-Encoding", "text/plain")
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        except (OSError, EOFError, DecodeError) as error:
            return self._reply(400, f"undecodable body: {error}".encode(), "text/plain")
        headers = [(key.lower(), value) for key, value in self.headers.items()]
        self.server.receiver._record("http", request, headers, len(body))
        response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self._reply(200, response, PROTOBUF_CONTENT_TYPE)

    def _reply(self, status: int, body: bytes, content_type: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # keep test output clean; requests are recorded instead


class _OtlpHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: RecordingReceiver):
        super().__init__((LOOPBACK, 0), _OtlpHttpHandler)
        self.receiver = receiver


class RecordingReceiver:
    """OTLP trace receiver on 127.0.0.1 that records every request it gets.

    gRPC is always served (``port``, ``endpoint``); OTLP/HTTP only with ``http=True``
    (``http_port``, ``http_endpoint``, ``http_traces_url``). The gRPC server keeps grpcio's
    default 4 MiB maximum receive size on purpose: exporters must split batches to fit it.
    """

    def __init__(self, http: bool = False, grpc_workers: int = 4):
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[ReceivedRequest] = []
        self._stopped = False

        self._grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=grpc_workers))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(self), self._grpc_server
        )
        self.port = self._grpc_server.add_insecure_port(f"{LOOPBACK}:0")
        if not self.port:
            raise RuntimeError("could not bind the gRPC receiver to 127.0.0.1")
        self._grpc_server.start()

        self._http_server: _OtlpHttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self.http_port: int | None = None
        if http:
            self._http_server = _OtlpHttpServer(self)
            self.http_port = self._http_server.server_address[1]
            self._http_thread = threading.Thread(
                target=self._http_server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="otlp-http-receiver",
                daemon=True,
            )
            self._http_thread.start()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """gRPC endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT wants it."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def http_endpoint(self) -> str:
        """OTLP/HTTP base endpoint (signal path not included)."""
        if self.http_port is None:
            raise RuntimeError("this receiver was started without http=True")
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def http_traces_url(self) -> str:
        return self.http_endpoint + OTLP_HTTP_TRACES_PATH

    # -- recording -----------------------------------------------------------------------------

    def _record(self, transport, request, headers, encoded_size):
        received = ReceivedRequest(transport, request, headers, encoded_size, time.time())
        with self._arrived:
            self._requests.append(received)
            self._arrived.notify_all()

    def requests(self) -> list[ReceivedRequest]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def spans(self) -> list[ReceivedSpan]:
        """Every span so far, flattened, in arrival order."""
        spans = []
        for received in self.requests():
            spans.extend(flatten_request(received.request, received.transport))
        return spans

    def span_count(self) -> int:
        with self._lock:
            return _count_spans(self._requests)

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Block until at least ``count`` spans arrived; return all of them.

        Raises AssertionError on timeout, saying how many did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                arrived = _count_spans(self._requests)
                if arrived >= count:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected at least {count} spans within {timeout}s, got {arrived} "
                        f"in {len(self._requests)} requests"
                    )
                self._arrived.wait(min(remaining, 0.1))
        return self.spans()

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop both servers; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._grpc_server.stop(grace=0.5).wait(5)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
