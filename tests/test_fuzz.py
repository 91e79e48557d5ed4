"""Hypothesis over the Python API (tests/scripts/api_fuzz.py), bounded for CI by its example
count. The Rust side's fuzzing is proptest: crates/*/tests/fuzz_*.rs, run by ``make test-rust``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import parse_output

CORPUS = Path(__file__).resolve().parent / "fuzz-corpus" / "hypothesis"
EXAMPLES = 150

pytest.importorskip("hypothesis")


def test_python_api_inputs_never_crash_and_every_span_is_accounted(run_script):
    completed = run_script("api_fuzz.py", args=[EXAMPLES, CORPUS], timeout=300)
    stats = parse_output(completed.stdout).stats
    assert stats["spans_started"] > 0
    assert (
        stats["spans_exported"] + stats["spans_dropped"] + stats["spans_below_min_duration"]
        == stats["spans_sampled"]
    )
