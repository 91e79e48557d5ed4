"""OpenTelemetry imported only after some traced root calls (issue 12, item 8): a callspan call
made inside an OpenTelemetry span opened right after the import joins that span's trace.

    python otel_late_import.py CALLS_BEFORE [during-import]

With ``during-import``, one more traced call is made while ``opentelemetry.trace`` is being
imported (from an import hook, before the module's names exist): callspan must look again later
rather than give up on OpenTelemetry.
"""

import sys

import callspan
from scriptkit import finish, report

CALLS_BEFORE = int(sys.argv[1])
DURING_IMPORT = sys.argv[2:] == ["during-import"]


def opentelemetry_modules():
    return sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")


@callspan.trace
def before_the_import(i):
    return i


@callspan.trace
def inside_the_otel_span():
    return 1


@callspan.trace
def during_the_import():
    return sys.modules["opentelemetry.trace"]


class CallDuringTheImport:
    """A finder that asks nothing of the import but makes a traced call in the middle of it:
    when ``opentelemetry.trace.span`` is looked for, ``opentelemetry.trace`` and its
    ``propagation`` module are in ``sys.modules`` but still executing their first lines."""

    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry.trace.span":
            report(during_import_initializing=during_the_import().__spec__._initializing)
        return None


def main():
    # Nothing imported OpenTelemetry yet (callspan itself does not).
    report(imported_at_start=opentelemetry_modules())
    for i in range(CALLS_BEFORE):
        before_the_import(i)
    if DURING_IMPORT:
        sys.meta_path.insert(0, CallDuringTheImport())
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    with trace.get_tracer("late-import").start_as_current_span("GET /late") as request:
        # The first traced call since the import.
        inside_the_otel_span()
        context = request.get_span_context()
    report(otel_trace=f"{context.trace_id:032x}", otel_span=f"{context.span_id:016x}")
    finish()


if __name__ == "__main__":
    main()
