"""An exception crossing N traced layers is described once (O(1) per layer), and its
``exception.stacktrace`` is rendered from the frames captured on the way, on a real receiver."""

from __future__ import annotations

from e2e_support import SCRIPTS_DIR, calls_from, marker_line, parse_output
from test_trace_e2e import wait_for_exactly

SCRIPT = SCRIPTS_DIR / "exception_depth.py"
DEPTH = 500
OTHERS = 5  # fail_with calls


def _frame(line: int, function: str) -> str:
    return f'  File "{SCRIPT}", line {line}, in {function}'


def test_one_exception_through_500_traced_levels_is_described_once(receiver, run_script):
    output = parse_output(run_script(SCRIPT).stdout)
    spans = wait_for_exactly(receiver, DEPTH + OTHERS, timeout=30)
    stats = output.stats
    assert output.facts["flushed"] is True
    assert stats["spans_dropped"] == 0 and stats["export_errors"] == 0, stats
    # __str__ is user code: run once for the exception, not once per layer. The traced call it
    # makes starts (counted) but is not recorded: its parent is the unsampled describing step.
    assert output.facts["boom_str_calls"] == 1
    assert stats["spans_started"] == DEPTH + OTHERS + 1, stats
    assert stats["spans_sampled"] == stats["spans_exported"] == DEPTH + OTHERS, stats
    assert "count_str_call" not in {span.name for span in spans}
    assert output.facts["str_calls_after"] == 1
    assert output.facts["boom_is_intact"] is True

    descend_line = marker_line(SCRIPT, "CALL:descend")
    raise_line = marker_line(SCRIPT, "RAISE:boom")
    [top] = calls_from(spans, SCRIPT, "top")
    inner = calls_from(spans, SCRIPT, "descend")
    assert len(inner) == DEPTH - 1
    for span in [top, *inner]:
        event = span.event("exception")
        assert event.attributes["exception.type"] == "__main__.Boom"
        assert event.attributes["exception.message"] == f"boom after {DEPTH} levels"
    # The outermost span's traceback: every level, outermost first, then the raise, then the
    # exception line — Python's layout.
    expected = (
        ["Traceback (most recent call last):"]
        + [_frame(descend_line, "__main__.descend")] * (DEPTH - 1)
        + [_frame(raise_line, "__main__.descend"), f"__main__.Boom: boom after {DEPTH} levels"]
    )
    assert top.event("exception").attributes["exception.stacktrace"] == "\n".join(expected) + "\n"
    # Each layer's traceback starts at its own frame: lengths 1..DEPTH, each a suffix of the top.
    lengths = sorted(
        span.event("exception").attributes["exception.stacktrace"].count('  File "')
        for span in [top, *inner]
    )
    assert lengths == list(range(1, DEPTH + 1))


def test_messages_match_str_with_or_without_running_it(receiver, run_script):
    run_script(SCRIPT)
    spans = wait_for_exactly(receiver, DEPTH + OTHERS, timeout=30)
    line = marker_line(SCRIPT, "RAISE:fail_with")
    got = [
        (
            span.event("exception").attributes["exception.type"],
            span.event("exception").attributes["exception.message"],
            span.event("exception").attributes["exception.stacktrace"],
        )
        for span in sorted(
            calls_from(spans, SCRIPT, "fail_with"), key=lambda s: s.start_time_unix_nano
        )
    ]
    expected = [
        ("__main__.Quiet", "quiet message"),
        ("KeyError", "'missing'"),
        ("FileNotFoundError", "[Errno 2] No such file"),
        ("ValueError", ""),
        ("ValueError", "('two', 2)"),
    ]
    assert [(t, m) for t, m, _ in got] == expected
    for type_name, message, stacktrace in got:
        last = f"{type_name}: {message}" if message else type_name
        assert stacktrace == (
            f"Traceback (most recent call last):\n{_frame(line, '__main__.fail_with')}\n{last}\n"
        )
