"""Processes: fork (also mid-export), multiprocessing pools with every start method, and a
pre-fork server. Assertions are on what the receiver got: each span once, from the right pid."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
from e2e_support import parse_output


def pid_of(span) -> int:
    return span.resource_attributes["process.pid"]


def test_fork_child_exports_its_own_spans_and_nothing_twice(receiver, run_script):
    children = 3
    completed = run_script(
        "forking.py",
        args=(str(children),),
        # A long schedule delay: the before_fork spans are still queued when fork happens.
        env={"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BSP_MAX_QUEUE_SIZE": "100000"},
        timeout=120,
    )
    output = parse_output(completed.stdout)
    facts = output.facts
    assert facts["child_status"] == [0] * children, "a child failed to flush or deadlocked"
    expected = 10 + 3 + 5 * children
    spans = receiver.wait_for_spans(expected, timeout=30)
    names = Counter(span.name for span in spans)
    assert names["before_fork"] == 10, names  # sent by the parent only, never by a child
    assert names["in_child"] == 5 * children, names
    assert names["after_fork"] == 3, names
    assert all(pid_of(s) == facts["parent"] for s in spans if s.name != "in_child")
    child_pids = Counter(pid_of(s) for s in spans if s.name == "in_child")
    assert child_pids == Counter({pid: 5 for pid in facts["children"]})
    ids = [span.span_id for span in spans]
    assert len(ids) == len(set(ids)), "a span arrived twice"
    assert output.stats["spans_dropped"] == 0, output.stats


@pytest.mark.parametrize(
    "method",
    [m for m in ("fork", "forkserver", "spawn") if m in multiprocessing.get_all_start_methods()],
)
def test_pool_workers_deliver_every_span(receiver, run_script, method):
    completed = run_script("pools.py", args=(method,), timeout=120)
    facts = parse_output(completed.stdout).facts
    spans = receiver.wait_for_spans(20, timeout=30)
    resize = [s for s in spans if s.name == "resize"]
    assert len(resize) == 20, f"{method}: {len(resize)} of 20 worker spans arrived"
    worker_pids = {pid for _, pid in facts["results"]}
    assert {pid_of(s) for s in resize} <= worker_pids
    assert facts["parent"] not in worker_pids


def test_prefork_server_workers(receiver, run_script):
    completed = run_script("prefork.py", timeout=120)
    facts = parse_output(completed.stdout).facts
    assert facts["worker_status"] == [0, 0, 0]
    spans = receiver.wait_for_spans(1 + 12, timeout=30)
    handles = [s for s in spans if s.name == "handle"]
    assert len(handles) == 12
    assert Counter(pid_of(s) for s in handles) == Counter({pid: 4 for pid in facts["workers"]})
    (boot,) = [s for s in spans if s.name == "boot"]
    assert pid_of(boot) == facts["parent"]
