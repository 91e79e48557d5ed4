"""Many threads at once: every span arrives intact, parents stay within their thread."""

from __future__ import annotations

from collections import Counter

from e2e_support import parse_output
from otlp_receiver import RecordingReceiver


def test_32_threads_lose_and_corrupt_nothing(receiver, run_script):
    completed = run_script(
        "thread_storm.py",
        # Large enough to hold the whole burst: this test is about correctness, not drops.
        env={"OTEL_BSP_MAX_QUEUE_SIZE": "40000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2000"},
        timeout=120,
    )
    output = parse_output(completed.stdout)
    facts = output.facts
    storm = facts["threads"] * facts["calls"]
    expected = 2 * storm + 2 * facts["pooled"]
    assert output.stats["spans_dropped"] == 0, output.stats
    assert output.stats["spans_exported"] == expected, output.stats
    spans = receiver.wait_for_spans(expected, timeout=60)
    assert len({s.span_id for s in spans}) == expected, "lost or duplicated spans"

    by_id = {s.span_id: s for s in spans}
    outers = [s for s in spans if s.name == "outer"]
    inners = [s for s in spans if s.name == "inner"]
    assert len(outers) == len(inners) == storm + facts["pooled"]
    for span in inners:
        parent = by_id[span.parent_span_id]
        assert parent.name == "outer"
        assert parent.trace_id == span.trace_id
        assert parent.attributes["thread.id"] == span.attributes["thread.id"]
        assert parent.attributes["thread.name"] == span.attributes["thread.name"]
        assert span.attributes["caller.function.name"] == "__main__.outer"
    for span in outers:
        assert span.parent_span_id is None, "a thread's span leaked into another thread"
    per_thread = Counter(s.attributes["thread.name"] for s in outers)
    storm_threads = {name: n for name, n in per_thread.items() if name.startswith("storm-")}
    assert storm_threads == {f"storm-{t}": facts["calls"] for t in range(facts["threads"])}
    pool_threads = [name for name in per_thread if name.startswith("pool")]
    assert pool_threads and sum(per_thread[name] for name in pool_threads) == facts["pooled"]
    assert len({s.trace_id for s in outers}) == len(outers)


FLUSH_DURING_A_FLOOD = """
import threading, time
import callspan
from scriptkit import finish, report


@callspan.trace
def hot(i):
    return i


stop = threading.Event()


def flood():
    while not stop.is_set():
        for i in range(1000):
            hot(i)


threads = [threading.Thread(target=flood) for _ in range(2)]
for thread in threads:
    thread.start()
time.sleep(0.5)
results = []
for _ in range(3):
    started = time.monotonic()
    results.append([callspan.flush(timeout=20), time.monotonic() - started])
stop.set()
for thread in threads:
    thread.join()
report(flushes=results)
finish()
"""


def test_flush_is_answered_while_other_threads_flood_the_queue(receiver, run_script):
    # Two threads keep the queue above a batch the whole time; a flush must still be taken in
    # between batches (not wait for a gap that never comes) and export what was queued.
    output = parse_output(run_script(FLUSH_DURING_A_FLOOD, timeout=120).stdout)
    flushes = output.facts["flushes"]
    assert all(ok for ok, _ in flushes), flushes
    assert output.stats["spans_exported"] > 0 and output.stats["export_errors"] == 0, output.stats
    # Every span is accounted for: exported, or dropped for a full queue (the flood is faster
    # than any exporter), never lost.
    stats = output.stats
    assert stats["spans_sampled"] == stats["spans_exported"] + stats["spans_dropped"], stats


RECONFIGURE_WHILE_TRACING = """
import sys, threading, time
import callspan
from scriptkit import finish, report

first, second = sys.argv[1], sys.argv[2]


@callspan.trace
def hot(i):
    return i


stop = threading.Event()


def busy():
    while not stop.is_set():
        for i in range(20):
            hot(i)
        time.sleep(0.001)


threads = [threading.Thread(target=busy) for _ in range(2)]
for thread in threads:
    thread.start()
switches = []
for endpoint in [second, first, second, first, second]:
    time.sleep(0.05)
    called = time.time_ns()
    callspan.configure(endpoint=endpoint)
    switches.append([endpoint, called, time.time_ns()])
time.sleep(0.05)
stop.set()
for thread in threads:
    thread.join()
report(switches=switches)
finish()
"""


def test_reconfiguring_while_other_threads_trace_sends_later_spans_to_the_new_endpoint(
    receiver, run_script
):
    # Another thread's call during configure() must not start an exporter with the old
    # settings: every span that starts after configure() returned goes to the new endpoint.
    with RecordingReceiver() as other:
        output = parse_output(
            run_script(
                RECONFIGURE_WHILE_TRACING,
                args=(receiver.endpoint, other.endpoint),
                # Room for the calls made while one exporter hands over to the next.
                env={"OTEL_BSP_MAX_QUEUE_SIZE": "20000"},
            ).stdout
        )
        stats = output.stats
        assert stats["spans_dropped"] == 0 and stats["export_errors"] == 0, stats
        receivers = {receiver.endpoint: receiver, other.endpoint: other}
        total = sum(len(r.spans()) for r in receivers.values())
        assert total == stats["spans_exported"] == stats["spans_sampled"], (total, stats)
        switches = output.facts["switches"]
        for (endpoint, _, returned), following in zip(
            switches, switches[1:] + [[None, None, None]]
        ):
            # Spans that started after configure() returned and before the next configure()
            # was called went to `endpoint` only.
            until = following[1] or float("inf")
            for name, r in receivers.items():
                between = [s for s in r.spans() if returned < s.start_time_unix_nano < until]
                if name != endpoint:
                    assert between == [], f"{len(between)} spans went to the old endpoint"
                else:
                    assert between, "no spans between two switches: the test proves nothing"


THREAD_CHURN = """
import sys, threading
import callspan
from scriptkit import finish, report


@callspan.trace
def work(i):
    return i


def worker():
    for i in range(50):
        work(i)


rounds = int(sys.argv[1])
for _ in range(rounds):
    batch = [threading.Thread(target=worker) for _ in range(8)]
    for thread in batch:
        thread.start()
    for thread in batch:
        thread.join()
# A thread that queued a span and went idle: its spans go out at the flush too.
idle = threading.Event()
parked = threading.Thread(target=lambda: (worker(), idle.wait()))
parked.start()
flushed = callspan.flush(timeout=20)
idle.set()
parked.join()
report(threads=rounds * 8 + 1, flushed=flushed)
finish()
"""


def test_short_lived_threads_and_an_idle_one_deliver_every_span(receiver, run_script):
    # Each thread queues into a lane of its own (callspan-core's sink.rs); a lane outlives its
    # thread until drained, and an idle thread's spans do not wait for it to push again.
    completed = run_script(
        THREAD_CHURN, args=["40"], env={"OTEL_BSP_MAX_QUEUE_SIZE": "20000"}, timeout=120
    )
    output = parse_output(completed.stdout)
    expected = output.facts["threads"] * 50
    assert output.facts["flushed"] is True
    assert output.stats["spans_sampled"] == expected, output.stats
    assert output.stats["spans_exported"] == expected, output.stats
    assert output.stats["spans_dropped"] == 0, output.stats
    spans = receiver.wait_for_spans(expected, timeout=60)
    assert len({s.span_id for s in spans}) == expected
