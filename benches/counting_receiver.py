"""A light OTLP/gRPC trace receiver that only counts: spans, requests and bytes, with arrival times.

The recording receiver in ``tests/otlp_receiver.py`` flattens every span into Python objects,
which is right for asserting on attributes and far too slow for counting half a million spans a
second; even a full protobuf decode (upb, in C) of each request tops out near that rate on one
core. This one decodes only the envelope of each ``ExportTraceServiceRequest`` (resource spans →
scope spans → spans) with a schema whose ``Span`` has no fields, so protobuf skips over each
span's body instead of building its attributes, and adds up ``len(scope_spans.spans)``; about
ten times faster. Every ``VERIFY_EVERY``-th request is also decoded in full with the official
``opentelemetry-proto`` classes and its count compared (``mismatches`` must stay 0). Arrival
times are ``time.monotonic()``, which on Linux is the system-wide CLOCK_MONOTONIC, so a benchmark
can line them up with timestamps taken in another process.

It answers every request with success, listens on 127.0.0.1 only and keeps the gRPC default
4 MiB receive limit, like the collectors callspan talks to in production.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

LOOPBACK = "127.0.0.1"
_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_EMPTY_RESPONSE = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
VERIFY_EVERY = 64


def _envelope_class():
    """``ExportTraceServiceRequest`` down to ``ScopeSpans.spans``, with field-less spans.

    Field numbers are OTLP's: request.resource_spans = 1, ResourceSpans.scope_spans = 2,
    ScopeSpans.spans = 2.
    """
    file = descriptor_pb2.FileDescriptorProto(
        name="callspan_bench_envelope.proto", package="callspan_bench", syntax="proto3"
    )

    def message(name: str, field: tuple[str, int, str] | None = None) -> None:
        proto = file.message_type.add(name=name)
        if field is not None:
            field_name, number, type_name = field
            proto.field.add(
                name=field_name,
                number=number,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                type_name=f".callspan_bench.{type_name}",
            )

    message("OpaqueSpan")
    message("ScopeSpans", ("spans", 2, "OpaqueSpan"))
    message("ResourceSpans", ("scope_spans", 2, "ScopeSpans"))
    message("Request", ("resource_spans", 1, "ResourceSpans"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("callspan_bench.Request"))


_Envelope = _envelope_class()


def count_spans(request) -> int:
    """Spans in a decoded request (full or envelope)."""
    return sum(
        len(scope_spans.spans)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )


class CountingReceiver:
    """``with CountingReceiver() as r: ...`` — point an exporter at ``r.endpoint``."""

    def __init__(self, max_workers: int = 4):
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        handler = grpc.method_handlers_generic_handler(
            _SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=None,  # raw bytes: count them, then decode
                    response_serializer=None,
                )
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port(f"{LOOPBACK}:0")
        self.reset()

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _export(self, raw: bytes, context) -> bytes:
        spans = count_spans(_Envelope.FromString(raw))
        now = time.monotonic()
        with self._lock:
            verify = self.requests % VERIFY_EVERY == 0
        if verify:
            full = count_spans(trace_service_pb2.ExportTraceServiceRequest.FromString(raw))
            if full != spans:
                with self._lock:
                    self.mismatches += 1
        with self._lock:
            self.spans += spans
            self.requests += 1
            self.bytes += len(raw)
            self._arrivals.append(now)
            self._cumulative.append(self.spans)
        return _EMPTY_RESPONSE

    # -- reading the counters ------------------------------------------------------------------

    def reset(self) -> None:
        """Forgets everything counted so far."""
        with self._lock:
            self.spans = 0
            self.requests = 0
            self.mismatches = 0
            self.bytes = 0
            self._arrivals: list[float] = []
            self._cumulative: list[int] = []

    def last_arrival(self) -> float | None:
        """``time.monotonic()`` of the latest request, or None."""
        with self._lock:
            return self._arrivals[-1] if self._arrivals else None

    def spans_by(self, when: float) -> int:
        """Spans that had arrived by monotonic time ``when``."""
        with self._lock:
            index = bisect_right(self._arrivals, when)
            return self._cumulative[index - 1] if index else 0

    def wait_until_quiet(self, quiet: float = 0.5, timeout: float = 30.0) -> int:
        """Waits until no request has arrived for ``quiet`` seconds; returns the span count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.last_arrival()
            if last is None or time.monotonic() - last >= quiet:
                break
            time.sleep(quiet / 5)
        return self.spans

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> CountingReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> CountingReceiver:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
