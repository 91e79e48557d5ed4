"""End-to-end tests of callspan: real scripts in child processes, real OTLP/gRPC on the wire.

Every assertion is on what the recording receiver got (or on what the script observed about its own
functions); none is on callspan's internals. The attribute names are the span contract of
shared/DESIGN.md. callspan is imported by the children only: if it is not installed, these fail.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from e2e_support import (
    SCRIPTS_DIR,
    STATS_KEYS,
    calls_from,
    describe,
    marker_line,
    named,
    parse_output,
    run_python_script,
)
from otlp_receiver import SPAN_KIND_INTERNAL, STATUS_CODE_ERROR, RecordingReceiver
from rotel import free_port

IMGPIPE = SCRIPTS_DIR / "imgpipe.py"
PRESETS = SCRIPTS_DIR / "presets.py"
PIPELINE = SCRIPTS_DIR / "pipeline.py"

# Where each traced call in pipeline.py's run comes from: (file, marker, caller function, caller
# classes of the spans made there — one entry per span; None: caller.class.name must be absent).
PIPELINE_CALL_SITES = [
    (IMGPIPE, "rotator_rotate", "imgpipe.Rotator.rotate_image", ["imgpipe.Rotator"]),
    (IMGPIPE, "scaler_scale", "imgpipe.Scaler.scale_image", ["imgpipe.Scaler"]),
    # Method defined on the base class: the caller class is the instance's class.
    (
        IMGPIPE,
        "base_run",
        "imgpipe.Transformer.run",
        ["imgpipe.Rotator", "imgpipe.Scaler"],
    ),
    # Classmethod: the caller class is `cls`, the class it was called on.
    (
        IMGPIPE,
        "scaler_classmethod",
        "imgpipe.Scaler.thumbnail",
        ["imgpipe.FastScaler", "imgpipe.Scaler"],
    ),
    (IMGPIPE, "scaler_static", "imgpipe.Scaler.preview", [None]),
    (IMGPIPE, "func_rotate", "imgpipe.rotate_image", [None]),
    (IMGPIPE, "func_scale", "imgpipe.scale_image", [None]),
    (PIPELINE, "closure", "__main__.main.<locals>.via_closure", [None]),
    (PIPELINE, "module_level", "__main__.<module>", [None]),
    (PRESETS, "import_time", "presets.<module>", [None]),
]
PIPELINE_SPAN_COUNT = sum(len(classes) for *_, classes in PIPELINE_CALL_SITES)


# -- shared checks ---------------------------------------------------------------------------------


def assert_span_shape(span):
    """What every callspan span carries, whatever the call."""
    assert span.kind == SPAN_KIND_INTERNAL, span
    assert span.scope_name == "callspan", span
    assert span.scope_version, span
    assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano, span
    assert len(span.trace_id) == 32 and int(span.trace_id, 16) != 0, span
    assert len(span.span_id) == 16 and int(span.span_id, 16) != 0, span
    attributes = span.attributes
    for key in (
        "code.function.name",
        "code.file.path",
        "caller.function.name",
        "caller.file.path",
        "thread.name",
    ):
        assert isinstance(attributes.get(key), str) and attributes[key], (key, span)
    for key in ("code.line.number", "caller.line.number", "thread.id"):
        assert isinstance(attributes.get(key), int) and not isinstance(attributes[key], bool), (
            key,
            span,
        )
    assert span.resource_attributes.get("telemetry.sdk.name") == "callspan", (
        span.resource_attributes
    )
    assert span.resource_attributes.get("telemetry.sdk.language") == "python", (
        span.resource_attributes
    )


def assert_nothing_dropped(output, expected_spans):
    assert output.facts.get("flushed") is True, output.facts
    stats = output.stats
    assert stats is not None, "the script did not print callspan.stats() as its last line"
    assert STATS_KEYS <= set(stats), stats
    assert stats["spans_dropped"] == 0, stats
    assert stats["export_errors"] == 0, stats
    assert stats["queue_len"] == 0, stats
    assert (
        stats["spans_started"]
        == stats["spans_sampled"]
        == stats["spans_exported"]
        == expected_spans
    ), stats


def wait_for_exactly(receiver, count, timeout=15.0):
    """All spans of a finished child: at least ``count`` arrive, and then no more than ``count``."""
    spans = receiver.wait_for_spans(count, timeout=timeout)
    assert len(spans) == count, f"expected {count} spans, got {len(spans)}:\n{describe(spans)}"
    for span in spans:
        assert_span_shape(span)
    return spans


def run_and_collect(receiver, script, expected_spans, env=None, workdir=None):
    completed = run_python_script(script, receiver.endpoint, env=env, workdir=workdir)
    output = parse_output(completed.stdout)
    spans = wait_for_exactly(receiver, expected_spans)
    return output, spans


def assert_pipeline_call_sites(spans, facts):
    files = {
        IMGPIPE: facts["imgpipe_file"],
        PIPELINE: facts["script_file"],
        PRESETS: facts["presets_file"],
    }
    for path, reported in files.items():
        assert Path(reported) == path, "scripts must be imported from tests/scripts"
    for path, marker, caller_function, caller_classes in PIPELINE_CALL_SITES:
        site = calls_from(spans, path, marker)
        where = f"{path.name} CALL:{marker}"
        assert len(site) == len(caller_classes), (
            f"{where}: spans from there:\n{describe(site)}\nall:\n{describe(spans)}"
        )
        for span in site:
            assert span.name == "Transformer.apply_transform", where
            assert span.attributes["caller.function.name"] == caller_function, where
            assert span.attributes["caller.file.path"] == files[path], where
            assert span.attributes["caller.line.number"] == marker_line(path, marker), where
        got_classes = sorted(
            span.attributes.get("caller.class.name", None) or "<absent>" for span in site
        )
        assert got_classes == sorted(cls or "<absent>" for cls in caller_classes), where


# -- the image pipeline ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """pipeline.py run once for the tests that only read its spans."""
    with RecordingReceiver() as receiver:
        env = {
            "OTEL_SERVICE_NAME": "imgpipe-e2e",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=e2e,team=imaging",
        }
        output, spans = run_and_collect(
            receiver,
            PIPELINE,
            PIPELINE_SPAN_COUNT,
            env=env,
            workdir=tmp_path_factory.mktemp("pipeline"),
        )
        yield output, spans, receiver.requests()


def test_pipeline_caller_function_file_line_and_class(pipeline_run):
    output, spans, _ = pipeline_run
    assert_pipeline_call_sites(spans, output.facts)


def test_pipeline_callee_attributes(pipeline_run):
    output, spans, _ = pipeline_run
    facts = output.facts
    for span in spans:
        assert span.name == "Transformer.apply_transform"
        assert span.attributes["code.function.name"] == "imgpipe.Transformer.apply_transform"
        assert span.attributes["code.file.path"] == facts["imgpipe_file"]
        # The `def` line (DESIGN.md), not co_firstlineno (the first decorator's line).
        assert span.attributes["code.line.number"] == facts["apply_transform_first_line"]
        assert span.status_code != STATUS_CODE_ERROR
        assert span.events == []


def test_pipeline_root_calls_each_start_a_trace(pipeline_run):
    _, spans, _ = pipeline_run
    assert all(span.parent_span_id is None for span in spans), describe(spans)
    assert len({span.trace_id for span in spans}) == len(spans)
    assert len({span.span_id for span in spans}) == len(spans)


def test_pipeline_span_times_lie_within_the_run(pipeline_run):
    output, spans, _ = pipeline_run
    # Wall clock in the child vs the span clock: generous slack, this is not a precision test.
    slack_ns = 1_000_000_000
    for span in spans:
        assert output.facts["start_ns"] - slack_ns <= span.start_time_unix_nano
        assert span.end_time_unix_nano <= output.facts["end_ns"] + slack_ns


def test_pipeline_thread_attributes(pipeline_run):
    output, spans, _ = pipeline_run
    facts = output.facts
    for span in spans:
        assert span.attributes["thread.name"] == facts["thread_name"] == "MainThread"
        assert span.attributes["thread.id"] in (
            facts["thread_ident"],
            facts["thread_native_id"],
        )


def test_pipeline_resource_from_otel_environment(pipeline_run):
    output, spans, requests = pipeline_run
    facts = output.facts
    resource = spans[0].resource_attributes
    assert all(span.resource_attributes == resource for span in spans)
    assert resource["service.name"] == "imgpipe-e2e"
    assert resource["deployment.environment"] == "e2e"
    assert resource["team"] == "imaging"
    assert resource["telemetry.sdk.name"] == "callspan"
    assert resource["telemetry.sdk.language"] == "python"
    assert isinstance(resource["telemetry.sdk.version"], str) and resource["telemetry.sdk.version"]
    assert resource["process.pid"] == facts["pid"]
    # Instrumentation scope: "callspan" with the package version.
    assert {(span.scope_name, span.scope_version) for span in spans} == {
        ("callspan", resource["telemetry.sdk.version"])
    }
    if facts["callspan_version"] is not None:
        assert resource["telemetry.sdk.version"] == facts["callspan_version"]
    assert all(request.transport == "grpc" for request in requests)


def test_pipeline_stats_show_no_drops(pipeline_run):
    output, _, _ = pipeline_run
    assert_nothing_dropped(output, PIPELINE_SPAN_COUNT)


# -- resource defaults -----------------------------------------------------------------------------

RESOURCE_PROBE = """
import json, os, sys
import callspan

@callspan.trace
def probe():
    return 1

probe()
print("FACTS " + json.dumps({
    "executable": os.path.basename(sys.executable),
    "real_executable": os.path.basename(os.path.realpath(sys.executable)),
    "flushed": callspan.flush(timeout=30),
}))
print(json.dumps(callspan.stats()))
"""


def test_default_service_name_is_unknown_service_with_executable(receiver, run_script):
    output = parse_output(run_script(RESOURCE_PROBE).stdout)

    [span] = wait_for_exactly(receiver, 1)
    facts = output.facts
    allowed = {
        f"unknown_service:{facts['executable']}",
        f"unknown_service:{facts['real_executable']}",
    }
    assert span.resource_attributes["service.name"] in allowed
    assert_nothing_dropped(output, 1)


def test_service_name_from_resource_attributes_and_its_precedence(receiver, run_script):
    run_script(
        RESOURCE_PROBE,
        env={"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,tier=batch"},
    )
    [span] = wait_for_exactly(receiver, 1)
    assert span.resource_attributes["service.name"] == "from-attributes"
    assert span.resource_attributes["tier"] == "batch"

    receiver.clear()
    run_script(
        RESOURCE_PROBE,
        env={
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes",
            "OTEL_SERVICE_NAME": "from-service-name",
        },
    )
    [span] = wait_for_exactly(receiver, 1)
    # The spec: OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
    assert span.resource_attributes["service.name"] == "from-service-name"


# -- nesting ---------------------------------------------------------------------------------------


def test_nested_calls_are_children_in_one_trace(receiver, run_script):
    nesting = SCRIPTS_DIR / "nesting.py"
    output = parse_output(run_script(nesting).stdout)
    spans = wait_for_exactly(receiver, 10)
    assert_nothing_dropped(output, 10)

    roots = named(spans, "Pipeline.process")
    assert len(roots) == 2
    assert {root.attributes["caller.line.number"] for root in roots} == {
        marker_line(nesting, "main_process_first"),
        marker_line(nesting, "main_process_second"),
    }
    assert roots[0].trace_id != roots[1].trace_id, "each root call starts a new trace"
    for root in roots:
        assert root.parent_span_id is None
        assert root.attributes["caller.function.name"] == "__main__.main"
        trace = [span for span in spans if span.trace_id == root.trace_id]
        assert len(trace) == 5, describe(trace)
        children = [span for span in trace if span.parent_span_id == root.span_id]
        assert sorted(span.name for span in children) == [
            "Transformer.apply_transform",
            "Transformer.apply_transform",
            "finalize",
        ], describe(trace)
        [finalize] = named(children, "finalize")
        [checksum] = named(trace, "checksum")
        assert checksum.parent_span_id == finalize.span_id
        assert checksum.attributes["caller.function.name"] == "imgpipe.finalize"
        assert checksum.attributes["caller.line.number"] == marker_line(
            IMGPIPE, "finalize_checksum"
        )
        assert finalize.attributes["caller.function.name"] == "imgpipe.Pipeline.process"
        assert finalize.attributes["caller.class.name"] == "imgpipe.Pipeline"
        # Children run inside their parent.
        for child in trace:
            if child is not root:
                assert root.start_time_unix_nano <= child.start_time_unix_nano
                assert child.end_time_unix_nano <= root.end_time_unix_nano
        callers = sorted(
            span.attributes["caller.function.name"]
            for span in named(children, "Transformer.apply_transform")
        )
        assert callers == ["imgpipe.Rotator.rotate_image", "imgpipe.Scaler.scale_image"]


# -- exceptions ------------------------------------------------------------------------------------


def assert_exception_event(span, type_name, message):
    assert span.status_code == STATUS_CODE_ERROR, span
    event = span.event("exception")
    assert event is not None, span.events
    # Semantic conventions: the fully-qualified type, except builtins are bare ("ValueError").
    assert event.attributes["exception.type"].endswith(type_name), event.attributes
    assert event.attributes["exception.message"] == message, event.attributes
    stacktrace = event.attributes["exception.stacktrace"]
    assert isinstance(stacktrace, str) and type_name in stacktrace, event.attributes


def test_exceptions_are_recorded_and_propagate_unchanged(receiver, run_script):
    script = SCRIPTS_DIR / "exceptions.py"
    output = parse_output(run_script(script).stdout)
    spans = wait_for_exactly(receiver, 5)
    assert_nothing_dropped(output, 5)
    facts = output.facts
    corrupt_message = "bad header: b'\\x89PNX'"

    # The application sees exactly what was raised, traceback included.
    assert facts["corrupt_is_same_object"] is True
    assert facts["corrupt_type"] == "imgpipe.CorruptImageError"
    assert facts["corrupt_message"] == corrupt_message
    assert facts["corrupt_innermost"] == {
        "function": "decode",
        "line": marker_line(IMGPIPE, "RAISE:decode"),
    }
    assert facts["value_error_exact_type"] is True
    assert facts["value_error_args"] == ["unknown op 'shear'"]
    assert facts["value_error_innermost"] == {
        "function": "apply_transform",
        "line": marker_line(IMGPIPE, "RAISE:unknown_op"),
    }
    assert facts["placeholder_size"] == [1, 1]

    # Propagating through a traced parent: both spans are errors.
    [propagates] = calls_from(spans, script, "main_corrupt")
    assert propagates.name == "Pipeline.process_corrupt"
    assert_exception_event(propagates, "CorruptImageError", corrupt_message)
    [inner] = calls_from(spans, IMGPIPE, "pipeline_decode_propagates")
    assert inner.name == "decode" and inner.parent_span_id == propagates.span_id
    assert_exception_event(inner, "CorruptImageError", corrupt_message)

    # Caught by the traced parent: only the child is an error.
    [catches] = calls_from(spans, script, "main_caught")
    assert catches.name == "Pipeline.process_or_placeholder"
    assert catches.status_code != STATUS_CODE_ERROR and catches.event("exception") is None
    [caught] = calls_from(spans, IMGPIPE, "pipeline_decode_caught")
    assert caught.parent_span_id == catches.span_id
    assert_exception_event(caught, "CorruptImageError", "bad header: b'junk'")

    # A builtin exception from a method.
    [shear] = calls_from(spans, script, "main_shear")
    assert shear.name == "Transformer.apply_transform"
    assert shear.attributes["caller.function.name"] == "__main__.main"
    assert_exception_event(shear, "ValueError", "unknown op 'shear'")


# -- decoration forms, metadata, binding -----------------------------------------------------------

# span name -> the call-site markers in decorated_kinds.py that make one span each
DECORATED_CALL_SITES = {
    "Catalog.lookup": ["lookup_instance", "lookup_class"],
    "Catalog.load_above": ["load_above_class", "load_above_instance"],
    "Catalog.load_below": ["load_below_class", "load_below_instance"],
    "Catalog.digest_above": ["digest_above_class", "digest_above_instance"],
    "Catalog.digest_below": ["digest_below_class", "digest_below_instance"],
    "catalog.refresh": ["refresh"],
    "Catalog.empty_parens": ["empty_parens"],
    "resize": ["resize"],
}
DECORATED_SPAN_COUNT = sum(len(markers) for markers in DECORATED_CALL_SITES.values())


@pytest.fixture(scope="module")
def decorated_run(tmp_path_factory):
    with RecordingReceiver() as receiver:
        yield run_and_collect(
            receiver,
            SCRIPTS_DIR / "decorated_kinds.py",
            DECORATED_SPAN_COUNT,
            workdir=tmp_path_factory.mktemp("decorated"),
        )


def test_decorated_forms_behave_like_the_undecorated_ones(decorated_run):
    output, _ = decorated_run
    facts = output.facts
    assert facts["lookup_binds_instance"] is True
    assert facts["lookup_via_class"] is True
    assert (facts["load_above_on_class"], facts["load_above_on_instance"]) == (
        "Catalog",
        "SubCatalog",
    )
    assert (facts["load_below_on_class"], facts["load_below_on_instance"]) == (
        "Catalog",
        "SubCatalog",
    )
    assert (facts["digest_above_on_class"], facts["digest_above_on_instance"]) == (3, 4)
    assert (facts["digest_below_on_class"], facts["digest_below_on_instance"]) == (3, 4)
    assert facts["refresh"] == "refreshed"
    assert facts["empty_parens"] == "ok"
    assert facts["resize"] == ["img", 10, 0, False]


def test_decorated_metadata_is_preserved(decorated_run):
    output, _ = decorated_run
    facts = output.facts
    assert facts["resize_name"] == "resize"
    assert facts["resize_qualname"] == "resize"
    assert facts["resize_doc"] == "Resize an image (the decorator keeps this docstring)."
    assert facts["resize_module"] == "__main__"
    assert facts["resize_wrapped_is_function"] is True
    assert facts["resize_wrapped_name"] == "resize"
    assert facts["resize_signature"] == facts["expected_resize_signature"]
    assert facts["lookup_qualname"] == "Catalog.lookup"
    assert facts["lookup_doc"] == "Find one entry."
    assert facts["bound_lookup_self_is_instance"] is True
    assert facts["bound_lookup_signature"] == "(key)"
    assert facts["load_above_signature"] == "(key)"
    assert facts["load_below_signature"] == "(key)"
    assert facts["digest_above_signature"] == "(data)"


def test_trace_rejects_non_callables_at_decoration_time(decorated_run):
    output, _ = decorated_run
    facts = output.facts
    assert facts["non_callable_int"] == "TypeError"
    assert facts["non_callable_object"] == "TypeError"
    assert facts["non_callable_with_options"] == "TypeError"


def test_decorated_forms_make_one_span_per_call(decorated_run):
    output, spans = decorated_run
    script = SCRIPTS_DIR / "decorated_kinds.py"
    first_lines = output.facts["first_lines"]
    for span_name, markers in DECORATED_CALL_SITES.items():
        for marker in markers:
            site = calls_from(spans, script, marker)
            assert [span.name for span in site] == [span_name], f"CALL:{marker}:\n{describe(spans)}"
            [span] = site
            qualname = "Catalog.refresh" if span_name == "catalog.refresh" else span_name
            assert span.attributes["code.function.name"] == f"__main__.{qualname}"
            assert span.attributes["code.file.path"] == str(script)
            assert span.attributes["code.line.number"] == first_lines[qualname]
            assert span.attributes["caller.function.name"] == "__main__.main"
            assert "caller.class.name" not in span.attributes, "main() is a plain function"
    assert_nothing_dropped(output, DECORATED_SPAN_COUNT)


def test_trace_name_and_attributes_options(decorated_run):
    _, spans = decorated_run
    [refresh] = named(spans, "catalog.refresh")
    assert refresh.attributes["team"] == "imaging"
    assert refresh.attributes["retries"] == 3
    assert refresh.attributes["ratio"] == 0.5
    assert refresh.attributes["dry_run"] is False


# -- deep recursion, calls from C, threads, hostile callers ----------------------------------------


def test_recursion_500_deep_makes_a_501_span_chain(receiver, run_script):
    script = SCRIPTS_DIR / "recursion.py"
    output = parse_output(run_script(script).stdout)
    assert output.facts["result"] == 500
    spans = wait_for_exactly(receiver, 501)
    assert_nothing_dropped(output, 501)

    assert {span.name for span in spans} == {"descend"}
    assert len({span.trace_id for span in spans}) == 1
    [root] = [span for span in spans if span.parent_span_id is None]
    assert root.attributes["caller.function.name"] == "__main__.main"
    assert root.attributes["caller.line.number"] == marker_line(script, "root")
    child_of = {span.parent_span_id: span for span in spans if span.parent_span_id}
    assert len(child_of) == 500, "every span but the deepest has exactly one child"
    chain, current = [root], root
    while current.span_id in child_of:
        current = child_of[current.span_id]
        chain.append(current)
    assert len(chain) == 501
    for span in chain[1:]:
        assert span.attributes["caller.function.name"] == "__main__.descend"
        assert span.attributes["caller.line.number"] == marker_line(script, "recurse")


def test_calls_from_c_report_the_python_frame_that_called_into_c(receiver, run_script):
    script = SCRIPTS_DIR / "from_c.py"
    output = parse_output(run_script(script).stdout)
    count = output.facts["pixel_count"]
    spans = wait_for_exactly(receiver, 2 * count)
    assert_nothing_dropped(output, 2 * count)
    assert output.facts["brightened"] == [10, 6, 18, 2]
    assert output.facts["ordered"] == [9, 5, 3, 1]

    for name, caller, marker in [
        ("brighten", "__main__.brighten_all", "map"),
        ("darkness", "__main__.order_by_darkness", "sorted"),
    ]:
        site = calls_from(spans, script, marker)
        assert [span.name for span in site] == [name] * count, describe(spans)
        for span in site:
            assert span.attributes["caller.function.name"] == caller
            assert "caller.class.name" not in span.attributes


def test_thread_id_and_name_per_span(receiver, run_script):
    script = SCRIPTS_DIR / "threads.py"
    output = parse_output(run_script(script).stdout)
    workers = output.facts["worker_count"]
    spans = wait_for_exactly(receiver, workers + 1)
    assert_nothing_dropped(output, workers + 1)
    thread_ids = output.facts["thread_ids"]

    assert sorted(span.attributes["thread.name"] for span in spans) == sorted(thread_ids)
    # thread.id may be threading.get_ident() or get_native_id(), but the same kind throughout.
    id_kinds = set()
    for span in spans:
        ident, native_id = thread_ids[span.attributes["thread.name"]]
        assert span.attributes["thread.id"] in (ident, native_id), span.attributes
        id_kinds.add("ident" if span.attributes["thread.id"] == ident else "native")
    assert len(id_kinds) == 1
    assert len({span.attributes["thread.id"] for span in spans}) == workers + 1

    [main_span] = calls_from(spans, script, "main")
    assert main_span.attributes["thread.name"] == "MainThread"
    for span in calls_from(spans, script, "worker"):
        assert span.attributes["thread.name"].startswith("resizer-")
        assert span.attributes["caller.function.name"] == "__main__.worker"


def test_reading_the_caller_runs_no_user_code(receiver, run_script):
    script = SCRIPTS_DIR / "hostile_caller.py"
    output = parse_output(run_script(script).stdout)
    spans = wait_for_exactly(receiver, 2)
    assert_nothing_dropped(output, 2)

    assert output.facts["hooks_during_method_call"] == []
    assert output.facts["hooks_during_classmethod_call"] == []
    [from_method] = calls_from(spans, script, "hostile_method")
    [from_classmethod] = calls_from(spans, script, "hostile_classmethod")
    assert from_method.attributes["caller.function.name"] == "__main__.Hostile.render"
    assert from_classmethod.attributes["caller.function.name"] == "__main__.Hostile.render_class"
    # The real type, not what the __class__ property claims.
    assert from_method.attributes["caller.class.name"] == "__main__.Hostile"
    assert from_classmethod.attributes["caller.class.name"] == "__main__.Hostile"


# -- through a third-party collector ---------------------------------------------------------------


def test_spans_pass_through_rotel_intact(receiver, rotel_forwarding_to_receiver, run_script):
    completed = run_script(
        PIPELINE,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": rotel_forwarding_to_receiver.grpc_endpoint,
            "OTEL_SERVICE_NAME": "imgpipe-via-rotel",
        },
    )
    output = parse_output(completed.stdout)
    assert_nothing_dropped(output, PIPELINE_SPAN_COUNT)

    spans = wait_for_exactly(receiver, PIPELINE_SPAN_COUNT, timeout=20)
    assert_pipeline_call_sites(spans, output.facts)
    for span in spans:
        assert span.attributes["code.function.name"] == "imgpipe.Transformer.apply_transform"
        assert span.attributes["code.line.number"] == output.facts["apply_transform_first_line"]
        assert span.resource_attributes["service.name"] == "imgpipe-via-rotel"
        assert span.resource_attributes["process.pid"] == output.facts["pid"]


# -- process exit ----------------------------------------------------------------------------------


def test_exit_flushes_spans_without_an_explicit_flush(receiver, run_script):
    script = SCRIPTS_DIR / "exit_without_flush.py"
    span_count = 1000
    completed = run_script(script, args=[span_count])
    assert f"made {span_count} spans" in completed.stdout

    spans = wait_for_exactly(receiver, span_count)
    assert {span.name for span in spans} == {"encode_row"}
    assert {span.attributes["caller.function.name"] for span in spans} == {"__main__.<module>"}
    assert {span.attributes["caller.line.number"] for span in spans} == {
        marker_line(script, "loop")
    }


@pytest.fixture
def closed_port():
    """A 127.0.0.1 port with nothing listening: connections are refused at once."""
    return free_port()


@pytest.fixture
def silent_port():
    """A 127.0.0.1 port that accepts TCP (kernel backlog) but never answers a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


# Generous bound: the point is "exits by itself", not how fast; OTEL_BSP_EXPORT_TIMEOUT is 2 s.
EXIT_BOUND_SECONDS = 20


@pytest.mark.parametrize("port_fixture", ["closed_port", "silent_port"])
def test_exit_is_bounded_when_the_collector_is_unreachable(run_script, request, port_fixture):
    port = request.getfixturevalue(port_fixture)
    completed = run_script(
        SCRIPTS_DIR / "exit_without_flush.py",
        args=[200],
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_EXPORT_TIMEOUT": "2000",
        },
        timeout=EXIT_BOUND_SECONDS,
    )
    # The application never sees the exporter's trouble: normal output, exit status 0.
    assert "made 200 spans" in completed.stdout
