"""Root calls while the current OpenTelemetry context changes under them: each call joins the
span current at that moment. Every probe runs twice in a row, so the second call of each pair
is answered from the per-thread cache of the last context seen (keyed by the thread's
`contextvars` mapping where callspan reads it, else by OpenTelemetry's `Context` object)."""

from __future__ import annotations

import contextvars
import threading

import callspan
from callspan import _callspan
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from scriptkit import finish, report

seen: dict[str, list[str]] = {}
expected: dict[str, list[str] | None] = {}


@callspan.trace
def probe(label):
    # This call's own span id, from the traceparent it would send.
    span_id = callspan.inject()["traceparent"].split("-")[2]
    seen.setdefault(label, []).append(span_id)


def probe_twice(label, otel_span):
    probe(label)
    probe(label)
    if otel_span is None:
        expected[label] = None
    else:
        ctx = otel_span.get_span_context()
        expected[label] = [f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"]


def main():
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("context-changes")
    probe_twice("before", None)
    with tracer.start_as_current_span("a") as a:
        probe_twice("a", a)
        with tracer.start_as_current_span("b") as b:
            probe_twice("b", b)
        probe_twice("a again", a)
        # A new Context object holding the same span.
        token = context.attach(baggage.set_baggage("tenant", "t1"))
        probe_twice("a with baggage", a)
        context.detach(token)
        # Another `Context` object with the same variables (so the same mapping), and one
        # whose mapping differs by a variable OpenTelemetry does not read.
        contextvars.copy_context().run(probe_twice, "a in a copied context", a)
        other = contextvars.ContextVar("other")
        contextvars.copy_context().run(lambda: (other.set(1), probe_twice("a, other set", a)))
        # A new thread starts in an empty context: no OpenTelemetry span is current there.
        thread = threading.Thread(target=probe_twice, args=("a's thread", None))
        thread.start()
        thread.join()
        probe_twice("a after the thread", a)
    probe_twice("after", None)
    with tracer.start_as_current_span("c") as c:
        probe_twice("c", c)
    remote = NonRecordingSpan(
        SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    token = context.attach(trace.set_span_in_context(remote))
    probe_twice("remote", remote)
    context.detach(token)
    probe_twice("last", None)
    report(seen=seen, expected=expected, route=_callspan.otel_context_route())
    finish()


if __name__ == "__main__":
    main()
