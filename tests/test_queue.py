"""The span queue's size: in bytes by default (CALLSPAN_MAX_QUEUE_BYTES), in spans when
OTEL_BSP_MAX_QUEUE_SIZE says so, the smaller when both do; every span exported or counted.

Each test runs a child process that makes a burst of spans faster than any exporter ships them
(so whether they fit depends on the queue alone, not on timing) against the recording receiver.
"""

from __future__ import annotations

import subprocess
import sys

from e2e_support import parse_output, script_env

BURST = """
import sys
import callspan
from scriptkit import finish

@callspan.trace
def hot(i):
    return i

for i in range(int(sys.argv[1])):
    hot(i)
finish()
"""

# Above the spec's 2048-span queue many times over, below the 8 MiB default's 87,381 spans.
DEFAULT_FITS = 30_000


def accounted(stats) -> int:
    return stats["spans_exported"] + stats["spans_dropped"] + stats["spans_below_min_duration"]


def queue_spans(env: dict) -> int:
    """The queue size `python -m callspan config` shows for CALLSPAN_MAX_QUEUE_BYTES."""
    completed = subprocess.run(
        [sys.executable, "-m", "callspan", "config"],
        env=script_env("http://127.0.0.1:1", env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    row = next(
        line
        for line in completed.stdout.splitlines()
        if line.startswith("CALLSPAN_MAX_QUEUE_BYTES")
    )
    return int(row.split("(", 1)[1].split(" spans)", 1)[0])


def test_a_burst_beyond_the_spec_queue_fits_the_default_queue(receiver, run_script):
    completed = run_script(BURST, args=[str(DEFAULT_FITS)], timeout=120)
    stats = parse_output(completed.stdout).stats
    assert stats["spans_dropped"] == 0, stats
    assert stats["spans_exported"] == DEFAULT_FITS, stats
    spans = receiver.wait_for_spans(DEFAULT_FITS, timeout=60)
    assert len({span.span_id for span in spans}) == DEFAULT_FITS


def test_max_queue_bytes_bounds_the_queue_and_every_span_is_accounted_for(receiver, run_script):
    env = {"CALLSPAN_MAX_QUEUE_BYTES": "2000"}
    capacity = queue_spans(env)
    assert 1 <= capacity < 100, capacity
    completed = run_script(BURST, args=["20000"], env=env)
    stats = parse_output(completed.stdout).stats
    assert stats["dropped_queue_full"] > 0, stats
    assert accounted(stats) == stats["spans_sampled"] == 20000, stats
    assert len(receiver.wait_for_spans(stats["spans_exported"])) == stats["spans_exported"]
    # The default batch (512) does not fit a queue that small: capped, and said so.
    assert "CALLSPAN_MAX_QUEUE_BYTES" in completed.stderr, completed.stderr


def test_a_queue_size_in_spans_is_not_capped_by_the_default_bytes(receiver, run_script):
    default = queue_spans({})
    burst = default + 10_000
    completed = run_script(
        BURST, args=[str(burst)], env={"OTEL_BSP_MAX_QUEUE_SIZE": str(burst)}, timeout=120
    )
    stats = parse_output(completed.stdout).stats
    assert stats["spans_dropped"] == 0, stats
    assert len(receiver.wait_for_spans(burst, timeout=90)) == burst


def test_with_both_set_the_smaller_queue_applies(receiver, run_script):
    env = {"CALLSPAN_MAX_QUEUE_BYTES": "100000000", "OTEL_BSP_MAX_QUEUE_SIZE": "20"}
    completed = run_script(BURST, args=["20000"], env=env)
    stats = parse_output(completed.stdout).stats
    assert stats["dropped_queue_full"] > 0, stats
    assert accounted(stats) == stats["spans_sampled"] == 20000, stats
    assert len(receiver.wait_for_spans(stats["spans_exported"])) == stats["spans_exported"]


RAISING_BURST = """
import sys
import callspan
from scriptkit import finish, report

described = 0

class Backtrack(Exception):
    def __str__(self):
        global described
        described += 1
        return "no match here"

@callspan.trace
def attempt(i):
    raise Backtrack(i)

for i in range(int(sys.argv[1])):
    try:
        attempt(i)
    except Backtrack:
        pass
report(described=described)
finish()
"""


def test_a_full_queue_drops_a_raised_span_before_its_exception_is_described(receiver, run_script):
    # An exception's description runs its __str__ (user code, often the dearest part of a raised
    # call): a span the full queue drops anyway is counted as dropped without it, so a backlog
    # costs the application no more than the spans that are kept.
    burst = 20_000
    completed = run_script(RAISING_BURST, args=[str(burst)], env={"OTEL_BSP_MAX_QUEUE_SIZE": "20"})
    output = parse_output(completed.stdout)
    stats = output.stats
    assert stats["dropped_queue_full"] > 0, stats
    assert accounted(stats) == stats["spans_sampled"] == burst, stats
    # Described exactly for the spans that were queued, all of which arrived.
    assert output.facts["described"] == stats["spans_exported"], (output.facts, stats)
    spans = receiver.wait_for_spans(stats["spans_exported"])
    assert len(spans) == stats["spans_exported"]
    messages = {span.event("exception").attributes["exception.message"] for span in spans}
    assert messages == {"no match here"}, messages
