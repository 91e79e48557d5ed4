"""Every call counted per caller edge, at any sampling rate: OTLP metrics on the recording
receiver's metrics service, the caller report, the pstats file, exemplars, threads, asyncio,
the overflow edge, fork, and a receiver without a metrics service."""

from __future__ import annotations

import json
import pstats
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import SCRIPTS_DIR, marker_line, parse_output
from otlp_receiver import RecordingReceiver

IMGPIPE = str(SCRIPTS_DIR / "imgpipe.py")
CALLS = "callspan.calls"
DURATION = "callspan.call.duration"
ERROR = "imgpipe.CorruptImageError"
# Metrics are sent when asked for.
METRICS = {"OTEL_METRICS_EXPORTER": "otlp"}

APPLY = "imgpipe.Transformer.apply_transform"
PIPELINE = "imgpipe.Pipeline"
MODULE = "__main__.<module>"
# (callee, caller function, call-site marker or None, caller class, error type) → calls, for
# tests/scripts/count_pipeline.py.
EXPECTED = {
    (APPLY, "imgpipe.Rotator.rotate_image", "rotator_rotate", "imgpipe.Rotator", None): 35,
    (APPLY, "imgpipe.Scaler.scale_image", "scaler_scale", "imgpipe.Scaler", None): 25,
    (APPLY, "imgpipe.Scaler.thumbnail", "scaler_classmethod", "imgpipe.FastScaler", None): 10,
    (APPLY, "imgpipe.rotate_image", "func_rotate", None, None): 7,
    (f"{PIPELINE}.process", MODULE, None, None, None): 5,
    ("imgpipe.finalize", f"{PIPELINE}.process", "pipeline_finalize", PIPELINE, None): 5,
    ("imgpipe.checksum", "imgpipe.finalize", "finalize_checksum", None, None): 5,
    (f"{PIPELINE}.process_or_placeholder", MODULE, None, None, None): 3,
    (
        "imgpipe.decode",
        f"{PIPELINE}.process_or_placeholder",
        "pipeline_decode_caught",
        PIPELINE,
        ERROR,
    ): 3,
    (f"{PIPELINE}.process_corrupt", MODULE, None, None, ERROR): 2,
    (
        "imgpipe.decode",
        f"{PIPELINE}.process_corrupt",
        "pipeline_decode_propagates",
        PIPELINE,
        ERROR,
    ): 2,
}


def edge_of(attributes: dict, with_line: bool) -> tuple:
    return (
        attributes["code.function.name"],
        attributes.get("caller.function.name"),
        attributes.get("caller.line.number") if with_line else None,
        attributes.get("caller.class.name"),
        attributes.get("error.type"),
    )


def expected_edges() -> dict[tuple, int]:
    """EXPECTED with markers turned into line numbers (module-level calls: no line check)."""
    return {
        (callee, caller, marker_line(IMGPIPE, marker) if marker else None, cls, error): n
        for (callee, caller, marker, cls, error), n in EXPECTED.items()
    }


def counted_on_receiver(points) -> dict[tuple, int]:
    counted: dict[tuple, int] = {}
    for p in points:
        with_line = not p.attributes.get("caller.function.name", "").endswith("<module>")
        key = edge_of(p.attributes, with_line)
        counted[key] = counted.get(key, 0) + (p.value if p.kind == "sum" else p.count)
    return counted


def run_counted(run_script, tmp_path, env):
    report, stats = tmp_path / "report.json", tmp_path / "calls.pstats"
    done = run_script("count_pipeline.py", env=env, args=[report, stats])
    return done, report, stats


def test_every_call_is_counted_with_sampling_off_on_the_receiver_in_the_report_and_in_pstats(
    receiver, run_script, tmp_path
):
    done, report, stats = run_counted(
        run_script, tmp_path, {"OTEL_TRACES_SAMPLER": "always_off", **METRICS}
    )
    assert receiver.span_count() == 0
    sums = receiver.latest_points(CALLS)
    assert counted_on_receiver(sums) == expected_edges(), done.stderr
    histograms = receiver.latest_points(DURATION)
    assert counted_on_receiver(histograms) == expected_edges()
    for point in sums:
        assert point.is_monotonic
        assert point.temporality == "AGGREGATION_TEMPORALITY_CUMULATIVE"
        assert point.attributes["caller.file.path"].endswith(".py")
    for point in histograms:
        assert sum(point.bucket_counts) == point.count
        assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
        assert point.sum > 0
        # always_off: no span, so no exemplar.
        assert point.exemplars == []
    resource = sums[0].resource_attributes
    assert resource["telemetry.sdk.name"] == "callspan"
    assert "process.pid" in resource

    # The report: the same counts per traced function and per call site.
    functions = {f["function"]: f for f in json.loads(report.read_text())["functions"]}
    per_function: dict[str, int] = {}
    errors: dict[str, int] = {}
    for (callee, _, _, _, error), n in EXPECTED.items():
        per_function[callee] = per_function.get(callee, 0) + n
        errors[callee] = errors.get(callee, 0) + (n if error else 0)
    assert {name: f["calls"] for name, f in functions.items()} == per_function
    assert {name: f["errors"] for name, f in functions.items()} == errors
    apply = functions["imgpipe.Transformer.apply_transform"]
    assert sorted(c["calls"] for c in apply["callers"]) == [7, 10, 25, 35]
    assert all(c["total_ns"] > 0 for c in apply["callers"])

    # pstats: loads, each traced function with its callers and their call counts.
    loaded = pstats.Stats(str(stats))
    by_name = {key[2]: (key, value) for key, value in loaded.stats.items()}
    key, (cc, nc, tt, ct, callers) = by_name["imgpipe.Transformer.apply_transform"]
    assert key[0].endswith("imgpipe.py") and key[1] > 0
    assert nc == 77 and cc == 77
    assert 0 < tt <= ct
    assert sorted(n for n, _, _, _ in callers.values()) == [7, 10, 25, 35]
    # A traced caller is keyed the way it is keyed as a callee: gprof2dot draws one node.
    _, (_, _, _, _, checksum_callers) = by_name["imgpipe.checksum"]
    assert list(checksum_callers) == [by_name["imgpipe.finalize"][0]]
    assert by_name["imgpipe.decode"][1][1] == 5


def test_the_pstats_file_renders_with_gprof2dot(receiver, run_script, tmp_path):
    _, _, stats = run_counted(
        run_script, tmp_path, {"OTEL_TRACES_SAMPLER": "always_off", **METRICS}
    )
    dot = subprocess.run(
        [
            sys.executable,
            "-m",
            "gprof2dot",
            "-f",
            "pstats",
            "--node-thres=0",
            "--edge-thres=0",
            str(stats),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert dot.startswith("digraph")
    assert "imgpipe.Transformer.apply_transform" in dot
    assert "imgpipe.Rotator.rotate_image" in dot
    assert "->" in dot


def test_exemplars_point_at_spans_that_arrived(receiver, run_script, tmp_path):
    run_counted(run_script, tmp_path, {"OTEL_TRACES_SAMPLER": "always_on", **METRICS})
    spans = {(s.trace_id, s.span_id): s for s in receiver.spans()}
    assert len(spans) == sum(EXPECTED.values())
    histograms = receiver.latest_points(DURATION)
    assert counted_on_receiver(histograms) == expected_edges()
    for point in histograms:
        assert point.exemplars, point.attributes
        for trace_id, span_id, value in point.exemplars:
            span = spans[(trace_id, span_id)]
            assert span.attributes["code.function.name"] == point.attributes["code.function.name"]
            assert span.attributes.get("caller.line.number") == point.attributes.get(
                "caller.line.number"
            )
            duration = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
            assert value == pytest.approx(duration)


BUCKETED = """
import time
import callspan

@callspan.trace
def work(seconds):
    if seconds:
        time.sleep(seconds)

for seconds in [0, 0.003, 0, 0.03, 0.003, 0, 0.03, 0.0004, 0]:
    work(seconds)
"""


def bucket_of(seconds: float, bounds: list[float]) -> int:
    """The OTLP explicit bucket of a value (bounds are inclusive upper bounds)."""
    return next((i for i, bound in enumerate(bounds) if seconds <= bound), len(bounds))


def test_each_bucket_carries_the_latest_sampled_span_that_fell_in_it(receiver, run_script):
    run_script(BUCKETED, env={"OTEL_TRACES_SAMPLER": "always_on", **METRICS})
    spans = {(s.trace_id, s.span_id): s for s in receiver.spans()}
    assert len(spans) == 9
    (point,) = receiver.latest_points(DURATION)
    assert point.count == 9

    def seconds(span) -> float:
        return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9

    # The latest-ending arrived span of every bucket any span fell in.
    latest: dict[int, object] = {}
    for span in sorted(spans.values(), key=lambda s: s.end_time_unix_nano):
        latest[bucket_of(seconds(span), point.explicit_bounds)] = span
    assert len(latest) >= 3  # sleeps of 0, 0.4 ms, 3 ms and 30 ms: at least three buckets
    by_bucket = {}
    for trace_id, span_id, value in point.exemplars:
        bucket = bucket_of(value, point.explicit_bounds)
        assert bucket not in by_bucket, "two exemplars in one bucket"
        assert point.bucket_counts[bucket] > 0
        span = spans[(trace_id, span_id)]  # a span that arrived
        assert value == pytest.approx(seconds(span))
        by_bucket[bucket] = span
    assert by_bucket == latest


@pytest.mark.parametrize("exporters", ["console", "console,otlp"])
def test_the_console_metrics_exporter_prints_otlp_json_with_exact_counts(
    receiver, run_script, exporters
):
    done = run_script(
        ASYNC, env={"OTEL_TRACES_SAMPLER": "always_on", "OTEL_METRICS_EXPORTER": exporters}
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith('{"resourceMetrics"')]
    assert lines, done.stderr
    # The export at exit is the last line, cumulative: every call.
    request = json.loads(lines[-1])
    (resource_metrics,) = request["resourceMetrics"]
    (scope_metrics,) = resource_metrics["scopeMetrics"]
    metrics = {m["name"]: m for m in scope_metrics["metrics"]}

    def attrs(point):
        return {a["key"]: next(iter(a["value"].values())) for a in point["attributes"]}

    caller = "__main__.gather_all.<locals>.<genexpr>"
    calls = {
        (attrs(p)["caller.function.name"], attrs(p).get("error.type")): int(p["asInt"])
        for p in metrics[CALLS]["sum"]["dataPoints"]
    }
    assert calls == {(caller, None): 45, (caller, "KeyError"): 5}
    if "otlp" in exporters:
        # A list: every export goes to each exporter; the receiver's last one has the same totals.
        received = {
            (p.attributes["caller.function.name"], p.attributes.get("error.type")): p.value
            for p in receiver.latest_points(CALLS)
        }
        assert received == calls
    else:
        assert receiver.metric_requests() == []
    assert metrics[CALLS]["sum"]["isMonotonic"] is True
    histogram = metrics[DURATION]["histogram"]["dataPoints"]
    counts = {attrs(p).get("error.type"): int(p["count"]) for p in histogram}
    assert counts == {None: 45, "KeyError": 5}
    spans = {(s.trace_id, s.span_id) for s in receiver.spans()}
    assert len(spans) == 50
    for p in histogram:
        assert sum(int(n) for n in p["bucketCounts"]) == int(p["count"])
        assert p["exemplars"]
        for e in p["exemplars"]:
            assert (e["traceId"], e["spanId"]) in spans


THREADS = """
import threading
import callspan

@callspan.trace
def work(i):
    return i + 1

def worker():
    for i in range(2500):
        work(i)  # CALL:thread_work

threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i in range(100):
    work(i)
"""


def test_calls_from_many_threads_are_all_counted(receiver, run_script):
    run_script(
        THREADS,
        env={"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01", **METRICS},
    )
    counted = {
        (p.attributes["caller.function.name"], p.value) for p in receiver.latest_points(CALLS)
    }
    assert counted == {("__main__.worker", 10_000), ("__main__.<module>", 100)}


SITES = str(SCRIPTS_DIR / "count_sites.py")
SITES_ROUNDS = 40
SITES_TARGET = "__main__.target"


def sites_expected() -> dict[tuple, int]:
    """(caller function, line, caller class, error type) → calls, for count_sites.py."""
    line = {m: marker_line(SITES, f"sites_{m}") for m in ("polymorphic", "classmethod", "flaky")}
    polymorphic = ("__main__.Base.go", line["polymorphic"])
    classmethod = ("__main__.Base.make", line["classmethod"])
    flaky = ("__main__.flaky", line["flaky"])
    expected = {
        (*polymorphic, "__main__.Alpha", None): 12,
        (*polymorphic, "__main__.Beta", None): 8,
        (*classmethod, "__main__.Alpha", None): 3,
        (*classmethod, "__main__.Beta", None): 6,
        (*flaky, None, "ValueError"): 4,
        (*flaky, None, None): 6,
        # After configure(capture=...) left classes out, then every caller attribute.
        (*polymorphic, None, None): 5,
        (None, None, None, None): 3,
    }
    for i in range(SITES_ROUNDS):
        # exec'd without __name__: named by the bare qualified name, at line 2 of its source.
        expected[(f"caller_{i}", 2, f"__main__.Dyn{i}", None)] = 2
    return expected


@pytest.mark.parametrize("sampler", ["always_off", "always_on"])
def test_each_call_site_class_and_error_is_counted_apart(receiver, run_script, sampler):
    """The per-thread call-site cache keeps apart what one site can make: callers of changing
    classes, raised and returned calls, run-time callers freed and replaced at the same
    addresses, and capture settings changed mid-run; sampled and unsampled calls alike."""
    done = run_script(SITES, args=[SITES_ROUNDS], env={"OTEL_TRACES_SAMPLER": sampler, **METRICS})
    counted = {
        (
            p.attributes.get("caller.function.name"),
            p.attributes.get("caller.line.number"),
            p.attributes.get("caller.class.name"),
            p.attributes.get("error.type"),
        ): p.value
        for p in receiver.latest_points(CALLS)
        if p.attributes["code.function.name"] == SITES_TARGET
    }
    assert counted == sites_expected(), done.stderr
    # The run made new callers at the addresses of freed ones (what a stale entry would miss).
    assert parse_output(done.stdout).facts["reused_addresses"] > 0


ASYNC = """
import asyncio
import callspan

@callspan.trace
async def fetch(i):
    await asyncio.sleep(0)
    if i % 10 == 0:
        raise KeyError(i)
    return i

async def gather_all():
    results = await asyncio.gather(*(fetch(i) for i in range(50)), return_exceptions=True)
    assert sum(isinstance(r, KeyError) for r in results) == 5

asyncio.run(gather_all())
"""


def test_coroutine_calls_are_counted_with_their_errors(receiver, run_script):
    run_script(ASYNC, env={"OTEL_TRACES_SAMPLER": "always_off", **METRICS})
    counted = {
        (p.attributes["caller.function.name"], p.attributes.get("error.type")): p.value
        for p in receiver.latest_points(CALLS)
    }
    # The coroutines are created in the generator expression: that is their caller.
    caller = "__main__.gather_all.<locals>.<genexpr>"
    assert counted == {(caller, None): 45, (caller, "KeyError"): 5}


OVERFLOW = """
import callspan

@callspan.trace
def f():
    pass

@callspan.trace
def g():
    pass

for _ in range(3):
    f(); f(); f(); f(); f()
    f()
    f()
    f()
    g()
"""


def test_edges_past_the_bound_fold_into_one_overflow_edge_per_callee(receiver, run_script):
    run_script(
        OVERFLOW, env={"OTEL_TRACES_SAMPLER": "always_off", "CALLSPAN_MAX_EDGES": "2", **METRICS}
    )
    points = receiver.latest_points(CALLS)
    by_caller = sorted(
        (p.attributes["code.function.name"], p.attributes["caller.function.name"], p.value)
        for p in points
    )
    # f's first two call sites (lines) are counted apart; its third, fourth and g's fold.
    assert by_caller == [
        ("__main__.f", "<other callers>", 6),
        ("__main__.f", "__main__.<module>", 3),
        ("__main__.f", "__main__.<module>", 15),
        ("__main__.g", "<other callers>", 3),
    ]
    assert sum(p.value for p in points) == 27


FORK = """
import os
import callspan

@callspan.trace
def step():
    pass

for _ in range(3):
    step()
pid = os.fork()
if pid == 0:
    for _ in range(5):
        step()
    callspan.shutdown()
    os._exit(0)
os.waitpid(pid, 0)
print("CHILD", pid)
"""


def test_a_forked_child_counts_from_zero_under_its_own_pid(receiver, run_script):
    done = run_script(FORK, env={"OTEL_TRACES_SAMPLER": "always_off", **METRICS})
    child = int(done.stdout.split("CHILD", 1)[1])
    latest: dict[int, int] = {}
    for p in receiver.metric_points(CALLS):
        latest[p.resource_attributes["process.pid"]] = p.value
    assert latest[child] == 5
    parents = [pid for pid in latest if pid != child]
    assert len(parents) == 1 and latest[parents[0]] == 3


SIMPLE = """
import callspan

@callspan.trace
def work():
    pass

for _ in range(4):
    work()
callspan.flush()
for _ in range(3):
    work()
"""


def test_delta_temporality_sends_what_changed(receiver, run_script):
    run_script(
        SIMPLE,
        env={
            "OTEL_TRACES_SAMPLER": "always_off",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
            **METRICS,
        },
    )
    points = receiver.metric_points(CALLS)
    assert [p.value for p in points] == [4, 3]
    assert {p.temporality for p in points} == {"AGGREGATION_TEMPORALITY_DELTA"}
    assert points[1].start_time_unix_nano == points[0].time_unix_nano


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_receiver_without_a_metrics_service_gets_one_warning_and_traces_go_on(
    run_script, tmp_path, protocol
):
    with RecordingReceiver(http=True, metrics=False) as jaeger_like:
        endpoint = jaeger_like.endpoint if protocol == "grpc" else jaeger_like.http_endpoint
        done = subprocess.run(
            [sys.executable, "-c", SIMPLE],
            env={
                **__import__("e2e_support").script_env(endpoint),
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                **METRICS,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert jaeger_like.span_count() == 7
    warnings = [line for line in done.stderr.splitlines() if "no metrics service" in line]
    assert len(warnings) == 1, done.stderr
    assert "OTEL_METRICS_EXPORTER=none" in warnings[0]


def test_the_report_at_exit_and_from_a_span_file(receiver, run_script, tmp_path):
    spans = tmp_path / "spans.jsonl"
    done = run_script(
        "count_pipeline.py",
        env={"CALLSPAN_REPORT": "1", "CALLSPAN_EXPORTER": "file", "CALLSPAN_FILE": str(spans)},
        args=[tmp_path / "r.json", tmp_path / "s.pstats"],
    )
    # At exit on stderr: aligned tables, apply_transform first (most total time is not
    # guaranteed, so look it up), its callers with their file:line.
    text = done.stderr
    assert "callspan report" in text
    assert "called by" in text
    rotate_line = marker_line(IMGPIPE, "rotator_rotate")
    assert f"imgpipe.py:{rotate_line}" in text
    # From the span file: the same counts per function.
    from_file = subprocess.run(
        [sys.executable, "-m", "callspan", "report", str(spans), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counted = {f["function"]: f["calls"] for f in json.loads(from_file)["functions"]}
    in_process = {
        f["function"]: f["calls"]
        for f in json.loads((tmp_path / "r.json").read_text())["functions"]
    }
    assert counted == in_process
    assert counted["imgpipe.Transformer.apply_transform"] == 77
    text_from_file = subprocess.run(
        [sys.executable, "-m", "callspan", "report", str(spans)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"imgpipe.py:{rotate_line}" in text_from_file


def test_counting_is_off_without_a_metrics_exporter_or_report(receiver, run_script, tmp_path):
    # OTEL_METRICS_EXPORTER unset is no metrics exporter.
    done = run_script(
        "import callspan, json\n"
        "@callspan.trace\n"
        "def f():\n    pass\n"
        "f()\n"
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    callspan.report(open('/dev/null', 'w'))\n"
        "print(json.dumps([str(w.message) for w in caught]))\n",
    )
    assert receiver.metric_requests() == []
    assert "CALLSPAN_REPORT=1" in json.loads(done.stdout.strip().splitlines()[-1])[0]


def test_marker_lines_exist():
    for _, _, marker, _, _ in EXPECTED:
        if marker:
            assert marker_line(IMGPIPE, marker) > 0
    assert Path(IMGPIPE).is_file()


INSTANCE = """
import callspan

@callspan.trace
def work():
    pass

class Caller:
    def __repr__(self):
        raise AssertionError("user code ran")

    def call(self):
        work()  # CALL:instance_call

one, two = Caller(), Caller()
one.call()
two.call()
work()
print("IDS", hex(id(one)), hex(id(two)))
"""


def test_caller_instance_id_is_the_callers_self_when_asked_for(receiver, run_script):
    done = run_script(INSTANCE, env={"CALLSPAN_CAPTURE": "all,instance"})
    ids = done.stdout.split("IDS", 1)[1].split()
    spans = receiver.wait_for_spans(3)
    assert [s.attributes.get("caller.instance.id") for s in spans] == [*ids, None]
    # Off by default.
    receiver.clear()
    run_script(INSTANCE)
    spans = receiver.wait_for_spans(3)
    assert all("caller.instance.id" not in s.attributes for s in spans)


PROFILED = """
import callspan

def work(i):
    if i % 4 == 0:
        raise ValueError(i)
    return i

def caller():
    for i in range(40):
        try:
            work(i)  # CALL:profiled_work
        except ValueError:
            pass

with callspan.profile(include=["__main__.work"]):
    caller()
"""


def test_the_profile_hooks_calls_are_counted_the_same_way(receiver, run_script):
    run_script(PROFILED, env={"OTEL_TRACES_SAMPLER": "always_off", **METRICS})
    counted: dict[tuple, int] = {}
    for p in receiver.latest_points(CALLS):
        key = (p.attributes["code.function.name"], p.attributes["caller.function.name"])
        counted[key] = counted.get(key, 0) + p.value
    # Every call, whatever the sampler; the failed ones by their exception's type.
    assert sum(counted.values()) == 40
    assert set(counted) == {("__main__.work", "__main__.caller")}
    errors = {
        p.attributes["error.type"]: p.value
        for p in receiver.latest_points(CALLS)
        if p.attributes.get("error.type")
    }
    assert errors == {"ValueError": 10}


def test_callspan_run_report_prints_the_report_of_the_profiled_calls(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        "def work(i):\n    return i\n\n\ndef caller():\n"
        "    for i in range(12):\n        work(i)\n\n\ncaller()\n"
    )
    from e2e_support import script_env

    env = script_env("http://127.0.0.1:9", {"OTEL_TRACES_SAMPLER": "always_off"})
    env["CALLSPAN_EXPORTER"] = "none"
    done = subprocess.run(
        [sys.executable, "-m", "callspan", "run", "--report", "--include", "__main__.work", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "__main__.work" in done.stderr
    assert f"{script}:7" in done.stderr
    assert " 12 " in done.stderr
