"""A recording OTLP trace receiver for tests.

It is a real server built on the official ``opentelemetry-proto`` messages and ``grpcio``:
it listens on 127.0.0.1 (ephemeral ports), implements ``TraceService/Export`` over gRPC and,
when asked, ``POST /v1/traces`` over OTLP/HTTP with protobuf bodies. It also implements the
metrics service (``MetricsService/Export``, ``POST /v1/metrics``) unless started with
``metrics=False``, which makes it answer metrics like Jaeger does (gRPC ``UNIMPLEMENTED``,
HTTP 404). Every request is kept
exactly as it arrived, together with its gRPC metadata or HTTP headers, so tests assert on
what was on the wire and never on callspan's internal state.

Optional, for transport tests: TLS on both servers (``tls=ServerTls(...)``, with client
certificates required when it names a client CA; the client certificate's common name is
recorded), a delay before every response (``response_delay``), planned answers for the next
requests (``plan()``: refusals the exporter should retry or not, partial successes), and a wire
tap in front of the
gRPC server (``grpc_wire_tap=True``) that records each gRPC message's compressed flag as it
crossed the connection, since grpcio hides ``grpc-encoding`` from the servicer.

Typical use::

    with RecordingReceiver() as receiver:
        ...  # point an exporter at receiver.endpoint
        spans = receiver.wait_for_spans(3, timeout=10)
        assert spans[0].attributes["caller.function.name"] == "imgpipe.Rotator.rotate_image"
"""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

# The tests start child processes while gRPC servers run in this process. Where subprocess
# forks (CPython < 3.10; later versions use vfork), gRPC's fork handlers restart its event engine
# in the child between fork and exec, subprocess then closes the child's descriptors, and the
# engine aborts the child ("epoll_wait error: Bad file descriptor"). Nothing here uses gRPC across
# a fork, so its fork support is off (it is read when grpc is first imported).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from opentelemetry.proto.collector.metrics.v1 import (  # noqa: E402
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (  # noqa: E402
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2  # noqa: E402
from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: E402

LOOPBACK = "127.0.0.1"
OTLP_HTTP_TRACES_PATH = "/v1/traces"
OTLP_HTTP_METRICS_PATH = "/v1/metrics"
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
    # Common name of the TLS client certificate the request came with (mutual TLS), else None.
    client_certificate_cn: str | None = None
    # HTTP only: bytes of the body as sent (before gzip decoding); None for gRPC.
    wire_size: int | None = None

    def header(self, name: str) -> str | None:
        """First value of a header / metadata key (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


@dataclass(frozen=True)
class ServerTls:
    """PEM material for a TLS receiver (both gRPC and HTTP use it)."""

    certificate_chain: bytes  # the server's certificate, then any intermediates
    private_key: bytes
    # When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    client_ca: bytes | None = None


@dataclass(frozen=True)
class WireMessage:
    """One gRPC message as it crossed the tapped connection (see ``grpc_wire_tap``)."""

    stream_id: int
    compressed: bool  # the message's compressed flag: its grpc-encoding was applied
    length: int  # bytes of the message on the wire (compressed, when it was)


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
    dropped_attributes_count: int = 0

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
                        dropped_attributes_count=span.dropped_attributes_count,
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
        names = context.auth_context().get("x509_common_name") or [None]
        client_cn = names[0].decode() if isinstance(names[0], bytes) else names[0]
        outcome = self._receiver._next_outcome("grpc")
        if outcome.refusal is not None:
            context.abort(outcome.refusal.grpc_code, outcome.refusal.message)
        self._receiver._record(
            "grpc", request, headers, request.ByteSize(), client_certificate_cn=client_cn
        )
        self._receiver._delay_response()
        return outcome.response()


@dataclass
class MetricPoint:
    """One data point of a received metric, with plain Python values."""

    metric: str  # e.g. "callspan.calls"
    kind: str  # "sum" or "histogram"
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]
    temporality: str  # e.g. "AGGREGATION_TEMPORALITY_CUMULATIVE"
    start_time_unix_nano: int
    time_unix_nano: int
    value: int | float | None = None  # a sum's value
    count: int | None = None  # a histogram's count
    sum: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    # (trace_id hex, span_id hex, value) of each exemplar
    exemplars: list[tuple[str, str, float]] = field(default_factory=list)
    is_monotonic: bool | None = None


def flatten_metrics(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[MetricPoint]:
    """Every sum and histogram data point of one request."""
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    def temporality(value: int) -> str:
        return metrics_pb2.AggregationTemporality.Name(value)

    points = []
    for resource_metrics in request.resource_metrics:
        resource_attributes = decode_attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                which = metric.WhichOneof("data")
                if which not in ("sum", "histogram"):
                    continue
                data = getattr(metric, which)
                for p in data.data_points:
                    common = dict(
                        metric=metric.name,
                        kind=which,
                        attributes=decode_attributes(p.attributes),
                        resource_attributes=resource_attributes,
                        temporality=temporality(data.aggregation_temporality),
                        start_time_unix_nano=p.start_time_unix_nano,
                        time_unix_nano=p.time_unix_nano,
                    )
                    if which == "sum":
                        point = MetricPoint(
                            **common,
                            value=getattr(p, p.WhichOneof("value") or "as_int"),
                            is_monotonic=data.is_monotonic,
                        )
                    else:
                        point = MetricPoint(
                            **common,
                            count=p.count,
                            sum=p.sum,
                            bucket_counts=list(p.bucket_counts),
                            explicit_bounds=list(p.explicit_bounds),
                            exemplars=[
                                (
                                    e.trace_id.hex(),
                                    e.span_id.hex(),
                                    getattr(e, e.WhichOneof("value") or "as_double"),
                                )
                                for e in p.exemplars
                            ],
                        )
                    points.append(point)
    return points


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: RecordingReceiver):
        self._receiver = receiver

    def Export(self, request, context):
        self._receiver._record_metrics("grpc", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


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
        wire_size = len(body)
        path = self.path.split("?", 1)[0]
        if path == OTLP_HTTP_METRICS_PATH and self.server.receiver.metrics:
            return self._metrics(body)
        if path != OTLP_HTTP_TRACES_PATH:
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
        outcome = self.server.receiver._next_outcome("http")
        if outcome.refusal is not None:
            refusal = outcome.refusal
            return self._reply(
                refusal.http_status,
                refusal.rpc_status(),
                PROTOBUF_CONTENT_TYPE,
                extra_headers=refusal.http_headers,
            )
        self.server.receiver._record(
            "http",
            request,
            headers,
            len(body),
            client_certificate_cn=_peer_common_name(self.connection),
            wire_size=wire_size,
        )
        self.server.receiver._delay_response()
        self._reply(200, outcome.response().SerializeToString(), PROTOBUF_CONTENT_TYPE)

    def _metrics(self, body: bytes):
        if (self.headers.get("Content-Encoding") or "").strip().lower() == "gzip":
            body = gzip.decompress(body)
        try:
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        except DecodeError as error:
            return self._reply(400, f"undecodable body: {error}".encode(), "text/plain")
        self.server.receiver._record_metrics("http", request)
        response = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        self._reply(200, response, PROTOBUF_CONTENT_TYPE)

    def _reply(self, status: int, body: bytes, content_type: str, extra_headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in extra_headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # keep test output clean; requests are recorded instead


def _peer_common_name(connection) -> str | None:
    if not isinstance(connection, ssl.SSLSocket):
        return None
    certificate = connection.getpeercert() or {}
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class _OtlpHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: RecordingReceiver, ssl_context: ssl.SSLContext | None = None):
        super().__init__((LOOPBACK, 0), _OtlpHttpHandler)
        self.receiver = receiver
        self.ssl_context = ssl_context

    def handle_error(self, request, client_address):
        # A client that gave up (its timeout) before the answer is not the receiver's problem.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, on the request's own thread, so a client that never
        # finishes it cannot stall the accept loop.
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        try:
            tls_socket = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return None  # e.g. no or an untrusted client certificate: nothing is recorded
        try:
            super().finish_request(tls_socket, client_address)
        finally:
            try:
                tls_socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tls_socket.close()


def _pem_file(directory: str, name: str, data: bytes) -> str:
    path = f"{directory}/{name}"
    with open(path, "wb") as file:
        file.write(data)
    return path


def _http_ssl_context(tls: ServerTls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # ssl loads PEM only from files: write them to a private temporary directory.
    with tempfile.TemporaryDirectory(prefix="otlp-receiver-tls-") as directory:
        context.load_cert_chain(
            _pem_file(directory, "chain.pem", tls.certificate_chain),
            _pem_file(directory, "key.pem", tls.private_key),
        )
        if tls.client_ca is not None:
            context.load_verify_locations(_pem_file(directory, "client-ca.pem", tls.client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP2_DATA = 0x0
_HTTP2_FLAG_END_STREAM = 0x1
_HTTP2_FLAG_PADDED = 0x8


class _GrpcMessageParser:
    """Finds gRPC messages in the client-to-server bytes of an HTTP/2 connection.

    Only DATA frames are read (no HPACK needed): each stream's data is a sequence of
    length-prefixed messages, a 1-byte compressed flag and a 4-byte big-endian length first.
    """

    def __init__(self, on_message):
        self._on_message = on_message
        self._buffer = bytearray()
        self._preface_seen = False
        self._streams: dict[int, bytearray] = {}

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if not self._preface_seen:
            if len(self._buffer) < len(_HTTP2_PREFACE):
                return
            if not self._buffer.startswith(_HTTP2_PREFACE):
                raise ValueError("not an HTTP/2 connection")
            del self._buffer[: len(_HTTP2_PREFACE)]
            self._preface_seen = True
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[0:3], "big")
            frame_type, flags = self._buffer[3], self._buffer[4]
            stream_id = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
            if len(self._buffer) < 9 + length:
                return
            payload = bytes(self._buffer[9 : 9 + length])
            del self._buffer[: 9 + length]
            if frame_type != _HTTP2_DATA:
                continue
            if flags & _HTTP2_FLAG_PADDED and payload:
                payload = payload[1 : len(payload) - payload[0]]
            pending = self._streams.setdefault(stream_id, bytearray())
            pending += payload
            while len(pending) >= 5:
                message_length = int.from_bytes(pending[1:5], "big")
                if len(pending) < 5 + message_length:
                    break
                self._on_message(WireMessage(stream_id, bool(pending[0]), message_length))
                del pending[: 5 + message_length]
            if flags & _HTTP2_FLAG_END_STREAM:
                self._streams.pop(stream_id, None)


class _GrpcWireTap:
    """A TCP proxy in front of the plain-text gRPC server that parses what clients send."""

    def __init__(self, target_port: int, on_message):
        self._target_port = target_port
        self._on_message = on_message
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="grpc-wire-tap", daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection((LOOPBACK, self._target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            parser = _GrpcMessageParser(self._on_message)
            directions = ((client, upstream, parser.feed), (upstream, client, None))
            for source, sink, observe in directions:
                threading.Thread(
                    target=self._pump, args=(source, sink, observe), daemon=True
                ).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, observe) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if observe is not None:
                    try:
                        observe(data)
                    except ValueError:
                        observe = None  # not HTTP/2: pass it on untouched
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass


@dataclass(frozen=True)
class Refusal:
    """A request turned away: a gRPC status, and its OTLP/HTTP equivalent."""

    grpc_code: grpc.StatusCode
    http_status: int
    message: str
    http_headers: tuple[tuple[str, str], ...] = ()

    def rpc_status(self) -> bytes:
        """The OTLP/HTTP error body: a ``google.rpc.Status`` (code = 1, message = 2), encoded
        by hand to need no googleapis package."""
        message = self.message.encode()
        assert self.grpc_code.value[0] < 128 and len(message) < 128
        return bytes([0x08, self.grpc_code.value[0], 0x12, len(message)]) + message


#: The server is overloaded: retryable (gRPC UNAVAILABLE, HTTP 503).
UNAVAILABLE = Refusal(grpc.StatusCode.UNAVAILABLE, 503, "overloaded, try again")
#: The request is bad: not retryable (gRPC INVALID_ARGUMENT, HTTP 400).
INVALID = Refusal(grpc.StatusCode.INVALID_ARGUMENT, 400, "cannot accept these spans")


@dataclass(frozen=True)
class Outcome:
    """How the receiver answers one request: refused, or accepted (maybe partially)."""

    refusal: Refusal | None = None
    rejected_spans: int = 0
    error_message: str = ""

    def response(self):
        response = trace_service_pb2.ExportTraceServiceResponse()
        if self.rejected_spans or self.error_message:
            response.partial_success.rejected_spans = self.rejected_spans
            response.partial_success.error_message = self.error_message
        return response


def partial_success(rejected_spans: int, error_message: str) -> Outcome:
    """Accepted, but ``rejected_spans`` of the request's spans were not (OTLP partial success)."""
    return Outcome(rejected_spans=rejected_spans, error_message=error_message)


class RecordingReceiver:
    """OTLP trace receiver on 127.0.0.1 that records every request it gets.

    gRPC is always served (``port``, ``endpoint``); OTLP/HTTP only with ``http=True``
    (``http_port``, ``http_endpoint``, ``http_traces_url``). The gRPC server keeps grpcio's
    default 4 MiB maximum receive size on purpose: exporters must split batches to fit it.

    ``tls``: both servers speak TLS only, and the endpoints are ``https://``. ``response_delay``:
    seconds every request waits, after being recorded, before it is answered (for client
    timeouts). ``grpc_wire_tap``: ``endpoint`` leads through a tap that records each gRPC
    message's compressed flag (``wire_messages()``); plain text only. ``metrics=False``: no
    metrics service (gRPC ``UNIMPLEMENTED``, HTTP 404), like Jaeger.
    """

    def __init__(
        self,
        http: bool = False,
        grpc_workers: int = 4,
        tls: ServerTls | None = None,
        response_delay: float = 0.0,
        grpc_wire_tap: bool = False,
        metrics: bool = True,
    ):
        if tls is not None and grpc_wire_tap:
            raise ValueError("the gRPC wire tap cannot read TLS traffic")
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[ReceivedRequest] = []
        self._metric_requests: list[tuple[str, Any]] = []
        self.metrics = metrics
        self._wire_messages: list[WireMessage] = []
        self._stopped = False
        self._planned: list[Outcome] = []
        self._refused: list[tuple[str, Refusal]] = []
        self.tls = tls
        self.response_delay = response_delay

        self._grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=grpc_workers))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(self), self._grpc_server
        )
        if metrics:
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
                _MetricsService(self), self._grpc_server
            )
        if tls is None:
            self.port = self._grpc_server.add_insecure_port(f"{LOOPBACK}:0")
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.private_key, tls.certificate_chain)],
                root_certificates=tls.client_ca,
                require_client_auth=tls.client_ca is not None,
            )
            self.port = self._grpc_server.add_secure_port(f"{LOOPBACK}:0", credentials)
        if not self.port:
            raise RuntimeError("could not bind the gRPC receiver to 127.0.0.1")
        self._grpc_server.start()
        self._wire_tap = _GrpcWireTap(self.port, self._record_wire) if grpc_wire_tap else None

        self._http_server: _OtlpHttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self.http_port: int | None = None
        if http:
            context = _http_ssl_context(tls) if tls is not None else None
            self._http_server = _OtlpHttpServer(self, context)
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
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    @property
    def endpoint(self) -> str:
        """gRPC endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT wants it (through the tap, if any)."""
        port = self._wire_tap.port if self._wire_tap is not None else self.port
        return f"{self.scheme}://{LOOPBACK}:{port}"

    @property
    def http_endpoint(self) -> str:
        """OTLP/HTTP base endpoint (signal path not included)."""
        if self.http_port is None:
            raise RuntimeError("this receiver was started without http=True")
        return f"{self.scheme}://{LOOPBACK}:{self.http_port}"

    @property
    def http_traces_url(self) -> str:
        return self.http_endpoint + OTLP_HTTP_TRACES_PATH

    # -- recording -----------------------------------------------------------------------------

    def _record(
        self,
        transport,
        request,
        headers,
        encoded_size,
        client_certificate_cn=None,
        wire_size=None,
    ):
        received = ReceivedRequest(
            transport,
            request,
            headers,
            encoded_size,
            time.time(),
            client_certificate_cn=client_certificate_cn,
            wire_size=wire_size,
        )
        with self._arrived:
            self._requests.append(received)
            self._arrived.notify_all()

    def _record_metrics(self, transport: str, request) -> None:
        with self._arrived:
            self._metric_requests.append((transport, request))
            self._arrived.notify_all()

    def metric_requests(self) -> list:
        """Every ExportMetricsServiceRequest so far, in arrival order."""
        with self._lock:
            return [request for _, request in self._metric_requests]

    def metric_points(self, metric: str | None = None) -> list[MetricPoint]:
        """Every data point so far (of ``metric``, if given), in arrival order."""
        points = []
        for request in self.metric_requests():
            points.extend(p for p in flatten_metrics(request) if metric in (None, p.metric))
        return points

    def latest_points(self, metric: str) -> list[MetricPoint]:
        """The points of ``metric`` in the last request that carried it (cumulative: the
        totals)."""
        for request in reversed(self.metric_requests()):
            points = [p for p in flatten_metrics(request) if p.metric == metric]
            if points:
                return points
        return []

    def _record_wire(self, message: WireMessage) -> None:
        with self._lock:
            self._wire_messages.append(message)

    def plan(self, *outcomes: Refusal | Outcome) -> None:
        """Answers the next requests (either protocol), one each, with ``outcomes`` in order:
        a :class:`Refusal` (``UNAVAILABLE``, ``INVALID``) turns the request away unrecorded; an
        :class:`Outcome` (``partial_success(...)``) records it and answers with it. Requests
        after those are accepted in full again."""
        with self._lock:
            self._planned.extend(
                o if isinstance(o, Outcome) else Outcome(refusal=o) for o in outcomes
            )

    def refused(self) -> list[tuple[str, Refusal]]:
        """The requests turned away by ``plan()``, as (transport, refusal), in arrival order."""
        with self._lock:
            return list(self._refused)

    def _next_outcome(self, transport: str) -> Outcome:
        with self._lock:
            outcome = self._planned.pop(0) if self._planned else Outcome()
            if outcome.refusal is not None:
                self._refused.append((transport, outcome.refusal))
            return outcome

    def _delay_response(self) -> None:
        if self.response_delay > 0:
            time.sleep(self.response_delay)

    def wire_messages(self) -> list[WireMessage]:
        """gRPC messages seen by the wire tap (``grpc_wire_tap=True``), in arrival order."""
        if self._wire_tap is None:
            raise RuntimeError("this receiver was started without grpc_wire_tap=True")
        with self._lock:
            return list(self._wire_messages)

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
            self._wire_messages.clear()

    # -- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop both servers; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self._wire_tap is not None:
            self._wire_tap.stop()
        self._grpc_server.stop(grace=0.5).wait(5)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
