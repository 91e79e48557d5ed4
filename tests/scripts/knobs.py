"""One script, many configurations: the test picks a scenario (argv[1]) and the environment."""

import sys
import time

import callspan
from scriptkit import finish, report


@callspan.trace
def apply_transform(i):
    return i


@callspan.trace(sample_rate=0.0)
def never_recorded(i):
    return i


@callspan.trace
def root(i):
    return [apply_transform(i), apply_transform(i + 1)]


@callspan.trace
def nap(seconds):
    # No sleep(0) for the quick calls: it yields the CPU, and on a loaded machine the thread may
    # not get it back for tens of milliseconds.
    if seconds:
        time.sleep(seconds)


@callspan.trace(attributes={"note": "a rather long attribute value", "k2": 2, "k3": 3.0})
def annotated():
    return 1


class Worker:
    def run(self):
        return apply_transform(7)  # CALL:in_method


def outer_frame():
    return middle_frame()  # CALL:outer


def middle_frame():
    return Worker().run()  # CALL:middle


def main(scenario):
    if scenario == "roots":
        for i in range(int(sys.argv[2])):
            apply_transform(i)
    elif scenario == "nested":
        for i in range(int(sys.argv[2])):
            root(i)
    elif scenario == "decorator_rate":
        for i in range(100):
            never_recorded(i)
            apply_transform(i)
    elif scenario == "durations":
        for _ in range(5):
            nap(0)
            nap(0.15)
    elif scenario == "frames":
        outer_frame()
    elif scenario == "limits":
        annotated()
    elif scenario == "always_off_then_on":
        # Inside an unsampled call there is no current span to propagate, remote parent or not;
        # a call made after the sampler is switched on mid-call starts a trace of its own.
        @callspan.trace
        def unsampled():
            headers = callspan.inject()
            callspan.configure(sampler="always_on")
            apply_transform(0)
            return headers

        with callspan.remote_parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
            report(injected=unsampled())
    elif scenario == "otel_context":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("library")

        @callspan.trace
        def traced_work():
            with tracer.start_as_current_span("library.query"):
                pass

        traced_work()
        (otel_span,) = memory.get_finished_spans()
        report(
            otel_trace=f"{otel_span.context.trace_id:032x}",
            otel_parent=f"{otel_span.parent.span_id:016x}" if otel_span.parent else None,
        )
    elif scenario == "otel_context_steps":
        # OpenTelemetry spans started inside each step of a coroutine, a generator and an async
        # generator nest under the callspan span of that call; between steps (the object
        # suspended) the OpenTelemetry context is the caller's again.
        import asyncio

        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("library")

        def query(label):
            with tracer.start_as_current_span(label):
                pass

        @callspan.trace
        async def fetch():
            query("coroutine.step1")
            await asyncio.sleep(0)
            query("coroutine.step2")

        @callspan.trace
        def rows():
            query("generator.step1")
            yield 1
            query("generator.step2")
            yield 2

        @callspan.trace
        async def stream():
            query("asyncgen.step1")
            yield 1
            await asyncio.sleep(0)
            query("asyncgen.step2")
            yield 2

        async def consume():
            await fetch()
            async for _ in stream():
                query("between.asyncgen")

        asyncio.run(consume())
        for _ in rows():
            query("between.generator")
        report(
            otel={
                s.name: [
                    f"{s.context.trace_id:032x}",
                    f"{s.parent.span_id:016x}" if s.parent else None,
                ]
                for s in memory.get_finished_spans()
            }
        )
    finish()


if __name__ == "__main__":
    main(sys.argv[1])
