"""Exporter failures reach Python logging (logger `callspan`), rate-limited, never as exceptions."""

from __future__ import annotations

from e2e_support import parse_output
from rotel import free_port


def test_export_failures_are_logged_once_and_counted(run_script):
    port = free_port()  # nothing listens there
    completed = run_script(
        "unreachable_logging.py",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "500",
            "OTEL_BSP_EXPORT_TIMEOUT": "3000",
        },
    )
    facts = parse_output(completed.stdout).facts
    records = facts["records"]
    assert records, "no warning reached the callspan logger"
    export_warnings = [r for r in records if "failed" in r[2] or "timed out" in r[2]]
    assert export_warnings, records
    assert all(name == "callspan" and level == "WARNING" for name, level, _ in records), records
    # Five failing flushes within the rate-limit interval: one warning per callsite, not five.
    assert len(export_warnings) <= 2, records
    stats = facts["stats"]
    assert stats["spans_exported"] == 0
    assert stats["spans_dropped"] == 100
    assert stats["export_errors"] >= 1
