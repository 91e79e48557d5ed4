"""An OpenTelemetry SDK span is current (as an instrumented web framework would open one):
callspan spans made inside it join its trace as its children; outside it, new traces start."""

import callspan
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from scriptkit import finish, report


@callspan.trace
def apply_transform(i):
    return i


@callspan.trace
def handle_request():
    return [apply_transform(i) for i in range(3)]


def main():
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("web-framework")
    with tracer.start_as_current_span("GET /images") as request:
        handle_request()
        context = request.get_span_context()
    apply_transform(-1)
    report(otel_trace=f"{context.trace_id:032x}", otel_span=f"{context.span_id:016x}")
    finish()


if __name__ == "__main__":
    main()
