"""Samplers and callspan's own knobs, end to end: what arrives at the receiver."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys

import pytest
from e2e_support import SCRIPTS_DIR, marker_line, parse_output, script_env

ROOTS = 20_000
# Enough room that a ratio test never drops for lack of queue space.
BIG_QUEUE = {"OTEL_BSP_MAX_QUEUE_SIZE": "50000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5000"}


def run(run_script, scenario, *args, **env):
    env = {**BIG_QUEUE, **{key: str(value) for key, value in env.items()}}
    completed = run_script("knobs.py", args=(scenario, *map(str, args)), env=env)
    return parse_output(completed.stdout)


def python_sdk_samples(trace_id_hex: str, ratio: float) -> bool:
    """opentelemetry-python's TraceIdRatioBased rule, written out independently."""
    bound = round(ratio * (2**64 - 1))
    return int(trace_id_hex, 16) & (2**64 - 1) < bound


@pytest.mark.parametrize("sampler", ["traceidratio", "parentbased_traceidratio"])
def test_ratio_samplers_within_statistical_bounds_and_agree_with_the_python_sdk(
    receiver, run_script, sampler
):
    ratio = 0.1
    out = run(
        run_script, "roots", ROOTS, OTEL_TRACES_SAMPLER=sampler, OTEL_TRACES_SAMPLER_ARG=ratio
    )
    expected = ROOTS * ratio
    sigma = math.sqrt(ROOTS * ratio * (1 - ratio))
    exported = out.stats["spans_exported"]
    assert abs(exported - expected) < 5 * sigma, out.stats
    spans = receiver.wait_for_spans(exported, timeout=30)
    assert len(spans) == exported
    assert all(python_sdk_samples(s.trace_id, ratio) for s in spans)
    assert out.stats["spans_started"] == ROOTS


@pytest.mark.parametrize(
    "sampler, roots_sampled",
    [
        ("always_on", True),
        ("always_off", False),
        ("parentbased_always_on", True),
        ("parentbased_always_off", False),
    ],
)
def test_fixed_samplers_and_parent_based_inheritance(receiver, run_script, sampler, roots_sampled):
    out = run(run_script, "nested", 50, OTEL_TRACES_SAMPLER=sampler)
    assert out.stats["spans_started"] == 150
    expected = 150 if roots_sampled else 0
    assert out.stats["spans_exported"] == expected, out.stats
    if expected:
        spans = receiver.wait_for_spans(expected, timeout=20)
        roots = {s.span_id: s for s in spans if s.name == "root"}
        children = [s for s in spans if s.name == "apply_transform"]
        assert len(roots) == 50 and len(children) == 100
        assert all(roots[c.parent_span_id].trace_id == c.trace_id for c in children)


def test_always_off_call_has_no_span_to_propagate_and_its_children_get_valid_traces(
    receiver, run_script
):
    out = run(run_script, "always_off_then_on", OTEL_TRACES_SAMPLER="always_off")
    assert out.facts["injected"] == {}
    assert out.stats["spans_started"] == 2
    assert out.stats["spans_exported"] == 1, out.stats
    (span,) = receiver.wait_for_spans(1, timeout=20)
    assert span.name == "apply_transform"
    assert span.parent_span_id is None
    assert int(span.trace_id, 16) != 0


def test_parent_based_ratio_keeps_whole_traces(receiver, run_script):
    out = run(
        run_script,
        "nested",
        3000,
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.2",
    )
    spans = receiver.wait_for_spans(out.stats["spans_exported"], timeout=20)
    roots = {s.span_id for s in spans if s.name == "root"}
    children = [s for s in spans if s.name == "apply_transform"]
    # Children inherit their root's decision: exactly two per sampled root, none orphaned.
    assert len(children) == 2 * len(roots)
    assert all(c.parent_span_id in roots for c in children)
    assert 0.15 < len(roots) / 3000 < 0.25


def test_callspan_sample_rules_and_decorator_rate(receiver, run_script):
    out = run(run_script, "decorator_rate", CALLSPAN_SAMPLE="*.never_recorded=1,*.apply_*=0.5")
    spans = receiver.wait_for_spans(out.stats["spans_exported"], timeout=20)
    names = [s.name for s in spans]
    assert "never_recorded" not in names  # sample_rate=0 on the decorator wins over the rule
    assert 25 <= names.count("apply_transform") <= 75  # 100 calls at 0.5
    assert out.stats["spans_started"] == 200


def test_max_spans_per_second(receiver, run_script):
    out = run(run_script, "roots", 5000, CALLSPAN_MAX_SPANS_PER_SECOND="100")
    exported = out.stats["spans_exported"]
    # One second of burst (100), plus what the bucket refills while the loop runs.
    assert 100 <= exported <= 120, out.stats
    assert out.stats["spans_rate_limited"] == 5000 - exported
    assert len(receiver.wait_for_spans(exported, timeout=20)) == exported


def test_min_duration(receiver, run_script):
    # A wide margin between the quick calls (no sleep) and the threshold, so that a loaded
    # machine's scheduling delays cannot push a quick call over it.
    out = run(run_script, "durations", CALLSPAN_MIN_DURATION="100ms")
    spans = receiver.wait_for_spans(5, timeout=20)
    assert len(spans) == 5
    assert all(s.end_time_unix_nano - s.start_time_unix_nano >= 100_000_000 for s in spans)
    assert out.stats["spans_below_min_duration"] == 5
    assert out.stats["spans_sampled"] == 10 and out.stats["spans_dropped"] == 0


def test_capture_subset(receiver, run_script):
    run(run_script, "frames", CALLSPAN_CAPTURE="function,thread")
    (span,) = receiver.wait_for_spans(1, timeout=20)
    assert span.attributes["caller.function.name"] == "__main__.Worker.run"
    assert "thread.name" in span.attributes
    for absent in ("caller.file.path", "caller.line.number", "caller.class.name"):
        assert absent not in span.attributes


def test_stack_depth(receiver, run_script):
    run(run_script, "frames", CALLSPAN_STACK_DEPTH="2")
    (span,) = receiver.wait_for_spans(1, timeout=20)
    script = SCRIPTS_DIR / "knobs.py"
    assert span.attributes["caller.class.name"] == "__main__.Worker"
    assert span.attributes["code.stacktrace"] == (
        f'  File "{script}", line {marker_line(script, "outer")}, in __main__.outer_frame\n'
        f'  File "{script}", line {marker_line(script, "middle")}, in __main__.middle_frame\n'
    )


def test_span_limits(receiver, run_script):
    run(
        run_script,
        "limits",
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="8",
        OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT="4",
    )
    (span,) = receiver.wait_for_spans(1, timeout=20)
    assert len(span.attributes) == 4
    assert all(len(v) <= 8 for v in span.attributes.values() if isinstance(v, str))
    assert span.dropped_attributes_count > 0


def test_otel_context_makes_otel_spans_children_of_callspan_spans(receiver, run_script):
    out = run(run_script, "otel_context", CALLSPAN_OTEL_CONTEXT="true")
    (span,) = receiver.wait_for_spans(1, timeout=20)
    assert out.facts["otel_trace"] == span.trace_id
    assert out.facts["otel_parent"] == span.span_id


def test_otel_context_applies_to_every_step_of_coroutines_and_generators(receiver, run_script):
    out = run(run_script, "otel_context_steps", CALLSPAN_OTEL_CONTEXT="true")
    spans = {s.name: s for s in receiver.wait_for_spans(3, timeout=20)}
    assert set(spans) == {"main.<locals>.fetch", "main.<locals>.rows", "main.<locals>.stream"}
    otel = out.facts["otel"]
    for kind, callspan_name in [
        ("coroutine", "main.<locals>.fetch"),
        ("generator", "main.<locals>.rows"),
        ("asyncgen", "main.<locals>.stream"),
    ]:
        span = spans[callspan_name]
        for step in ("step1", "step2"):
            assert otel[f"{kind}.{step}"] == [span.trace_id, span.span_id], (kind, step)
    # While the object is suspended the OpenTelemetry context is the consumer's: no parent.
    assert otel["between.generator"][1] is None
    assert otel["between.asyncgen"][1] is None


def test_without_otel_context_otel_spans_start_their_own_trace(receiver, run_script):
    out = run(run_script, "otel_context")
    (span,) = receiver.wait_for_spans(1, timeout=20)
    assert out.facts["otel_trace"] != span.trace_id


@pytest.mark.parametrize(
    "variable, value",
    [
        ("CALLSPAN_SAMPLE", "apply_transform"),
        ("CALLSPAN_MAX_SPANS_PER_SECOND", "fast"),
        ("CALLSPAN_MIN_DURATION", "250"),
        ("CALLSPAN_CAPTURE", "everything"),
        ("CALLSPAN_STACK_DEPTH", "-1"),
        ("CALLSPAN_OTEL_CONTEXT", "maybe"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "lots"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team"),
        # larger than the default queue (87,381 spans: CALLSPAN_MAX_QUEUE_BYTES)
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100000"),
        ("CALLSPAN_MAX_QUEUE_BYTES", "lots"),
    ],
)
def test_bad_callspan_values_warn_and_the_program_runs(receiver, run_script, variable, value):
    env = {variable: value}
    if variable == "OTEL_TRACES_SAMPLER_ARG":
        env["OTEL_TRACES_SAMPLER"] = "traceidratio"
    completed = run_script("knobs.py", args=("roots", "3"), env=env)
    warnings = [line for line in completed.stderr.splitlines() if variable in line]
    assert len(warnings) == 1, completed.stderr
    assert value in warnings[0]
    assert parse_output(completed.stdout).stats["spans_exported"] == 3


def test_python_m_callspan_config_shows_values_and_sources(receiver):
    env = script_env(receiver.endpoint, {"CALLSPAN_STACK_DEPTH": "3", "OTEL_SERVICE_NAME": "svc"})
    completed = subprocess.run(
        [sys.executable, "-m", "callspan", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = completed.stdout.splitlines()
    row = next(line for line in lines if line.startswith("CALLSPAN_STACK_DEPTH"))
    assert "3" in row and "(CALLSPAN_STACK_DEPTH)" in row
    row = next(line for line in lines if line.startswith("OTEL_SERVICE_NAME"))
    assert "svc" in row
    row = next(line for line in lines if line.startswith("OTEL_BSP_MAX_QUEUE_SIZE"))
    assert "CALLSPAN_MAX_QUEUE_BYTES" in row and "(default)" in row
    row = next(line for line in lines if line.startswith("CALLSPAN_MAX_QUEUE_BYTES"))
    assert "8388608 (87381 spans)" in row and "(default)" in row
    assert any(line.startswith("spans go to") and receiver.endpoint in line for line in lines)


def test_console_and_file_exporters(run_script, tmp_path):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    completed = run_script("knobs.py", args=("frames",), env={"OTEL_TRACES_EXPORTER": "console"})
    (line,) = [x for x in completed.stderr.splitlines() if x.startswith("callspan: ")]
    assert "apply_transform" in line and "<- __main__.Worker.run" in line
    assert "[__main__.Worker]" in line

    path = tmp_path / "spans.jsonl"
    run_script(
        "knobs.py",
        args=("nested", "3"),
        env={"CALLSPAN_EXPORTER": "file", "CALLSPAN_FILE": str(path)},
    )
    lines = path.read_text().splitlines()
    spans = []
    for text in lines:
        document = json.loads(text)
        # OTLP JSON writes ids as hex (plain protobuf JSON would use base64): check, convert,
        # then let the official schema parse the whole request.
        for resource_spans in document["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if span.get(key):
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        request = json_format.ParseDict(document, trace_service_pb2.ExportTraceServiceRequest())
        spans += [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 9
    assert {s.name for s in spans} == {"root", "apply_transform"}
    roots = {s.span_id for s in spans if s.name == "root"}
    assert all(s.parent_span_id in roots for s in spans if s.name == "apply_transform")


def test_sdk_disabled_makes_plain_calls(receiver, run_script):
    out = run(run_script, "nested", 10, OTEL_SDK_DISABLED="true")
    assert out.stats["spans_started"] == 0 and out.stats["spans_exported"] == 0
    assert receiver.spans() == []


def test_exporter_none_makes_and_counts_spans_but_sends_nothing(receiver, run_script):
    out = run(run_script, "nested", 10, OTEL_TRACES_EXPORTER="none")
    assert out.stats["spans_sampled"] == 30 and out.stats["spans_dropped"] == 0
    assert receiver.spans() == []


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 1.8e299])
def test_a_duration_keyword_that_is_no_number_of_nanoseconds_warns(seconds, caplog):
    # Found by the API fuzzer: seconds * 1e9 overflowed int() and configure() raised.
    import callspan

    with caplog.at_level("WARNING", logger="callspan"):
        callspan.configure(exporter="none", min_duration=seconds)
    warned = [r.getMessage() for r in caplog.records if "min_duration" in r.getMessage()]
    assert len(warned) == 1 and "using 0ns, the default" in warned[0], warned
    callspan.configure(exporter="none")


EXPORTER_PRIORITY = """
import json, os, threading
import callspan

@callspan.trace
def work(x):
    return x

work(1)
callspan.flush()

def nice_of(tid):
    # /proc/<pid>/task/<tid>/stat: the 19th field is the thread's nice value (after "(comm)").
    with open(f"/proc/self/task/{tid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])

threads = {}
for tid in os.listdir("/proc/self/task"):
    with open(f"/proc/self/task/{tid}/comm") as comm:
        threads[comm.read().strip()] = nice_of(tid)
print("NICE", json.dumps({"main": nice_of(threading.get_native_id()), **threads}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities: Linux")
@pytest.mark.parametrize(
    "setting, below",
    [
        ({}, 10),
        ({"CALLSPAN_EXPORTER_NICE": "3"}, 3),
        ({"CALLSPAN_EXPORTER_NICE": "0"}, 0),
        ({"CALLSPAN_EXPORTER_NICE": "25"}, 10),
    ],
    ids=["default", "3", "off", "out-of-range"],
)
def test_exporter_threads_run_below_the_application(run_script, setting, below):
    env = {"OTEL_METRICS_EXPORTER": "otlp", **setting}
    completed = run_script(EXPORTER_PRIORITY, env=env)
    nice = json.loads(completed.stdout.split("NICE", 1)[1])
    # A thread's comm is its name cut to 15 characters: callspan-metrics is "callspan-metric".
    for thread in ("callspan-export", "callspan-metric"):
        assert nice[thread] == min(nice["main"] + below, 19), nice
    if setting.get("CALLSPAN_EXPORTER_NICE") == "25":
        assert "CALLSPAN_EXPORTER_NICE" in completed.stderr
        assert "from 0 to 19" in completed.stderr
