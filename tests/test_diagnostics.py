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
    # Five failing flushes within the rate-limit interval: one warning, not five.
    assert len(export_warnings) == 1, records
    stats = facts["stats"]
    assert stats["spans_exported"] == 0
    assert stats["spans_dropped"] == 100
    assert stats["export_errors"] >= 1


def test_every_bad_setting_gets_its_own_warning(run_script):
    completed = run_script(
        "import callspan, logging\n"
        "logging.basicConfig()\n"
        "@callspan.trace\n"
        "def f():\n"
        "    return 1\n"
        "f()\n"
        "callspan.flush()\n",
        env={
            "OTEL_BSP_SCHEDULE_DELAY": "soon",
            "OTEL_BSP_MAX_QUEUE_SIZE": "-5",
            "OTEL_TRACES_SAMPLER": "sometimes",
        },
    )
    for variable, value in [
        ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-5"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
    ]:
        warnings = [line for line in completed.stderr.splitlines() if variable in line]
        assert len(warnings) == 1, completed.stderr
        assert value in warnings[0] and "WARNING:callspan" in warnings[0], warnings
