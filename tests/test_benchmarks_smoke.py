"""Smoke test of the benchmark scripts in benches/: each runs in ``--smoke`` mode and writes JSON.

Only that is checked (exit status 0, valid JSON, the expected rows); no timing is ever asserted:
a seconds-long run on a shared machine measures nothing. The real numbers come from
``make bench`` and are written up in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("yappi", reason="benchmark dependencies: make bench-deps")
pytest.importorskip("opentelemetry.sdk.trace", reason="benchmark dependencies: make bench-deps")
pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    reason="benchmark dependencies: make bench-deps",
)

BENCHES = Path(__file__).resolve().parent.parent / "benches"

OVERHEAD_ROWS = [
    "plain_function",
    "plain_method",
    "c_forwarding_wrapper",
    "callspan_sampled_function",
    "callspan_sampled_method",
    "callspan_unsampled_always_off",
    "callspan_sampled_function_counting",
    "callspan_unsampled_always_off_counting",
    "callspan_traceidratio_0.01",
    "otel_sdk_decorator",
    "otel_sdk_decorator_caller_attrs",
    "inspect_stack_decorator",
    "cprofile",
    "yappi",
]
THROUGHPUT_ROWS = [
    "callspan_defaults",
    "callspan_defaults_paced_500k",
    "callspan_defaults_paced_550k",
    "callspan_defaults_paced_550k_contended",
    "callspan_paced_550k_nice0_contended",
    "callspan_queue_64k_batch_8k",
    "otel_sdk_defaults",
    "receiver_ceiling_512",
]


def run_bench(script: str, tmp_path: Path, timeout: float = 60) -> dict:
    out = tmp_path / f"{script}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLSPAN_"))}
    completed = subprocess.run(
        [sys.executable, str(BENCHES / f"{script}.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    result = json.loads(out.read_text())
    assert result["smoke"] is True
    assert result["machine"]["python"]
    return result


def test_overhead_smoke(tmp_path):
    result = run_bench("overhead", tmp_path)
    assert [row["name"] for row in result["rows"]] == OVERHEAD_ROWS
    for row in result["rows"]:
        assert isinstance(row["ns_per_call"], float)
        assert isinstance(row["overhead_ns"], float)
        assert isinstance(row["counting_adds_ns"], float) == row["name"].endswith("_counting")
        if row["name"].endswith("_counting"):
            assert row["counting_pairs"] == 2
            q1, q3 = row["counting_adds_quartiles_ns"]
            assert q1 <= row["counting_adds_pair_median_ns"] <= q3
    assert len(result["targets"]) == 7


def test_throughput_smoke(tmp_path):
    result = run_bench("throughput", tmp_path)
    assert [row["name"] for row in result["rows"]] == THROUGHPUT_ROWS
    for row in result["rows"]:
        assert row["spans_made"] > 0
        for key in ("made_per_s", "received_per_s", "delivered_pct", "dropped", "peak_rss_mib"):
            assert key in row
        assert row["contended"] == row["name"].endswith("_contended")
        if row["sdk"] == "callspan":
            # per-thread CPU and wake-ups, the hot thread's and the exporter's at least
            assert {"main (hot)", "callspan-export"} <= set(row["threads"]), row["threads"]
    contended = next(row for row in result["rows"] if row["contended"])
    assert contended["busy_process_cpu_s"] > 0
    assert result["targets"]


def test_memory_smoke(tmp_path):
    result = run_bench("memory", tmp_path)
    for key in ("rss_start_mib", "rss_end_mib", "rss_growth_mib", "peak_rss_mib", "shutdown_s"):
        assert isinstance(result[key], float)
    assert result["stats_after_shutdown"]["spans_sampled"] > 0
    assert len(result["targets"]) == 2


def test_versions_smoke(tmp_path):
    out = tmp_path / "versions.json"
    subprocess.run(
        [sys.executable, str(BENCHES / "versions.py"), "--smoke", "--json", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rows = {row["name"] for row in json.loads(out.read_text())["rows"]}
    assert {"plain_function", "cprofile", "sampled_function", "unsampled_function"} <= rows


HOOK_ROWS = [
    "undecorated",
    "cprofile",
    "yappi",
    "viztracer",
    "hook_matching_nothing",
    "hook_sampled",
    "hook_always_off",
    "decorator_sampled",
]


def test_hook_smoke(tmp_path):
    pytest.importorskip("viztracer", reason="benchmark dependencies: make bench-deps")
    result = run_bench("hook", tmp_path)
    assert [row["row"] for row in result["rows"]] == HOOK_ROWS
    assert set(result["mixed_workload_ms"]) == {"undecorated", "cprofile", "hook_one_module"}
    assert result["spans_exported"] > 0
    assert len(result["targets"]) == 2


REALCODE_ROWS = [
    "undecorated",
    "callspan_sampled",
    "callspan_always_off",
    "callspan_traceidratio_0.01",
    "cprofile",
    "yappi",
    "viztracer",
    "otel_sdk",
    "undecorated_otel_scale",
]


def test_realcode_smoke(tmp_path):
    """benches/realcode.py at its --quick scale: pyparsing (the pinned sdist of tests/realcode,
    downloaded with pip on first use) traced whole, every row run, the parse results the same."""
    pytest.importorskip("viztracer", reason="benchmark dependencies: make bench-deps")
    result = run_bench("realcode", tmp_path, timeout=600)
    assert [row["row"] for row in result["rows"]] == REALCODE_ROWS
    assert result["results_differ"] == []
    assert result["census"]["pyparsing_calls"] > 0 and result["census"]["exceptions_made"] > 0
    rows = {row["row"]: row for row in result["rows"]}
    for name in ("callspan_sampled", "otel_sdk"):
        row = rows[name]
        assert row["spans_sampled"] > 0 and row["export_errors"] == 0
        # Every sampled span is either delivered or counted as dropped.
        assert row["spans_exported"] + row["spans_dropped"] == row["spans_sampled"]
    assert rows["callspan_always_off"]["spans_sampled"] == 0
    assert len(result["targets"]) == 2
