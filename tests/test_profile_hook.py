"""Profile mode: ``python -m callspan run`` and ``callspan.profile()`` on undecorated code.

Each test writes a small undecorated program into a temporary directory, runs it in a child
process under the profile hook, and checks the spans the recording receiver got.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from e2e_support import script_env

# An undecorated image pipeline: a package beside the script, as a team's code would be.
IMGPIPE = """
import math


class Transformer:
    def apply_transform(self, pixels, matrix):
        (a, b), (c, d) = matrix
        return sorted((a * x + b * y, c * x + d * y) for x, y in pixels)


class Rotator(Transformer):
    def rotate_image(self, pixels, degrees):
        r = math.radians(degrees)
        matrix = ((math.cos(r), -math.sin(r)), (math.sin(r), math.cos(r)))
        return self.apply_transform(pixels, matrix)  # rotate-calls


class Scaler(Transformer):
    def scale_image(self, pixels, factor):
        return self.apply_transform(pixels, ((factor, 0.0), (0.0, factor)))  # scale-calls


def make_image(size):
    return [(float(x), float(y)) for x in range(size) for y in range(size)]
"""

APP = """
import json
import sys

from imgpipe.core import Rotator, Scaler, make_image


def main():
    image = make_image(4)  # main-makes
    Rotator().rotate_image(image, 90)  # main-rotates
    Scaler().scale_image(image, 2.0)
    print("ARGV " + json.dumps(sys.argv))
    print("FILE " + __file__)
    print("PATH0 " + sys.path[0])


if __name__ == "__main__":
    main()
"""


def marker_line(path: Path, text: str) -> int:
    """The 1-based line of the one line of ``path`` containing ``text``."""
    hits = [n for n, line in enumerate(Path(path).read_text().splitlines(), 1) if text in line]
    assert len(hits) == 1, f"{text!r} on lines {hits} of {path}"
    return hits[0]


def write_program(directory: Path, app: str = APP) -> Path:
    package = directory / "imgpipe"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text(IMGPIPE)
    script = directory / "app.py"
    script.write_text(textwrap.dedent(app))
    return script


def run(command, receiver, cwd, env=None, check=True, timeout=60):
    completed = subprocess.run(
        command,
        env=script_env(receiver.endpoint, env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and completed.returncode != 0:
        pytest.fail(
            f"{command} exited with {completed.returncode}\n"
            f"--- stdout ---\n{completed.stdout}\n--- stderr ---\n{completed.stderr}"
        )
    return completed


def callspan_run(*args):
    return [sys.executable, "-m", "callspan", "run", *map(str, args)]


def by_name(spans):
    named = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def check_pipeline_spans(spans, core: Path, app: Path):
    named = by_name(spans)
    assert set(named) == {
        "main",
        "make_image",
        "Rotator.rotate_image",
        "Scaler.scale_image",
        "Transformer.apply_transform",
    }, sorted(named)
    (rotate,) = named["Rotator.rotate_image"]
    assert rotate.attributes["code.function.name"] == "imgpipe.core.Rotator.rotate_image"
    assert rotate.attributes["code.file.path"] == str(core)
    assert rotate.attributes["code.line.number"] == marker_line(core, "def rotate_image")
    assert rotate.attributes["caller.function.name"] == "__main__.main"
    assert rotate.attributes["caller.file.path"] == str(app)
    assert rotate.attributes["caller.line.number"] == marker_line(app, "# main-rotates")
    transforms = named["Transformer.apply_transform"]
    callers = {s.attributes["caller.function.name"]: s for s in transforms}
    assert set(callers) == {"imgpipe.core.Rotator.rotate_image", "imgpipe.core.Scaler.scale_image"}
    via_rotate = callers["imgpipe.core.Rotator.rotate_image"]
    assert via_rotate.attributes["caller.line.number"] == marker_line(core, "# rotate-calls")
    assert via_rotate.attributes["caller.class.name"] == "imgpipe.core.Rotator"
    assert via_rotate.parent_span_id == rotate.span_id
    (main,) = named["main"]
    assert rotate.parent_span_id == main.span_id
    assert main.attributes["caller.function.name"] == "__main__.<module>"


def test_run_script_spans_name_their_callers_and_nothing_else(receiver, tmp_path):
    app = write_program(tmp_path)
    completed = run(callspan_run(app, "one", "--two"), receiver, tmp_path)
    assert "ARGV " + json.dumps([str(app), "one", "--two"]) in completed.stdout
    assert f"FILE {app}" in completed.stdout
    assert f"PATH0 {tmp_path}" in completed.stdout
    spans = receiver.wait_for_spans(6)
    check_pipeline_spans(spans, tmp_path / "imgpipe" / "core.py", app)
    # No builtins (sorted, math.*), no standard library, no callspan, no comprehensions.
    for span in spans:
        assert span.attributes["code.function.name"].startswith(("__main__.", "imgpipe.")), span


def test_run_module(receiver, tmp_path):
    write_program(tmp_path)
    (tmp_path / "imgpipe" / "__main__.py").write_text(
        "from imgpipe.core import Rotator, make_image\n"
        "def entry():\n"
        "    Rotator().rotate_image(make_image(2), 45)  # entry-rotates\n"
        "entry()\n"
    )
    run(callspan_run("-m", "imgpipe"), receiver, tmp_path)
    named = by_name(receiver.wait_for_spans(4))
    (rotate,) = named["Rotator.rotate_image"]
    assert rotate.attributes["caller.function.name"] == "__main__.entry"
    assert rotate.attributes["caller.line.number"] == 3
    assert "entry" in named and "Transformer.apply_transform" in named


def test_console_script_and_command(receiver, tmp_path):
    app = write_program(tmp_path)
    console = Path(sys.executable).parent / "callspan"
    assert console.exists(), "the callspan console script is installed with the package"
    run([console, "run", "--include", "imgpipe.core.Scaler.*", app], receiver, tmp_path)
    spans = receiver.wait_for_spans(1)
    assert [s.name for s in spans] == ["Scaler.scale_image"]
    receiver.clear()
    # -- COMMAND: every Python process the command starts is profiled.
    run(
        callspan_run("--include", "imgpipe.core.Rotator", "--", sys.executable, app),
        receiver,
        tmp_path,
    )
    spans = receiver.wait_for_spans(1)
    assert [s.name for s in spans] == ["Rotator.rotate_image"]


def test_exit_codes_exceptions_and_missing_script(receiver, tmp_path):
    write_program(tmp_path)
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\ndef leave():\n    sys.exit(3)\nleave()\n")
    assert run(callspan_run(exits), receiver, tmp_path, check=False).returncode == 3
    raises = tmp_path / "raises.py"
    raises.write_text("def fail():\n    raise KeyError('boom')  # raise-here\nfail()\n")
    completed = run(callspan_run(raises), receiver, tmp_path, check=False)
    plain = subprocess.run(
        [sys.executable, str(raises)], capture_output=True, text=True, cwd=tmp_path
    )
    assert completed.returncode == plain.returncode == 1
    assert completed.stderr == plain.stderr  # the same traceback, no callspan/runpy frames
    named = by_name(receiver.wait_for_spans(2))
    (fail,) = named["fail"]
    assert fail.status_code == "STATUS_CODE_ERROR"
    assert named["leave"][0].status_code == "STATUS_CODE_ERROR"  # SystemExit ends it too
    assert named["leave"][0].event("exception").attributes["exception.type"] == "SystemExit"
    event = fail.event("exception").attributes
    assert event["exception.type"] == "KeyError"
    assert event["exception.message"] == "'boom'"
    raised_at = f"line {marker_line(raises, 'raise-here')}, in __main__.fail"
    assert raised_at in event["exception.stacktrace"]
    missing = run(callspan_run(tmp_path / "nope.py"), receiver, tmp_path, check=False)
    plain = subprocess.run(
        [sys.executable, str(tmp_path / "nope.py")], capture_output=True, text=True
    )
    assert missing.returncode == plain.returncode == 2
    assert missing.stderr == plain.stderr


def test_exclusions_and_env_options(receiver, tmp_path):
    app = write_program(tmp_path)
    run(
        callspan_run("--exclude", "imgpipe.core.Transformer.*", "--exclude", "__main__", app),
        receiver,
        tmp_path,
    )
    spans = receiver.wait_for_spans(3)
    assert sorted(s.name for s in spans) == [
        "Rotator.rotate_image",
        "Scaler.scale_image",
        "make_image",
    ]
    receiver.clear()
    run(
        [sys.executable, app],
        receiver,
        tmp_path,
        env={
            "CALLSPAN_PROFILE_INCLUDE": "imgpipe.core.*",
            "CALLSPAN_PROFILE_EXCLUDE": "*.make_image, *.scale_image",
        },
        check=False,
    )
    # Plain `python app.py` does not import callspan: the environment alone changes nothing...
    assert receiver.span_count() == 0
    run(
        [
            sys.executable,
            "-c",
            "import callspan, runpy; runpy.run_path('app.py', run_name='__main__')",
        ],
        receiver,
        tmp_path,
        env={
            "CALLSPAN_PROFILE_INCLUDE": "imgpipe.core.*",
            "CALLSPAN_PROFILE_EXCLUDE": "*.make_image, *.scale_image",
        },
    )
    # ...importing callspan starts the profile from it.
    spans = receiver.wait_for_spans(3)
    assert sorted(s.name for s in spans) == [
        "Rotator.rotate_image",
        "Transformer.apply_transform",
        "Transformer.apply_transform",
    ]


def test_a_glob_matching_nothing_warns_with_the_modules_seen(receiver, tmp_path):
    app = write_program(tmp_path)
    completed = run(callspan_run("--include", "nothing_like_this.*", app), receiver, tmp_path)
    assert "matched no function" in completed.stderr
    assert "imgpipe.core" in completed.stderr and "__main__" in completed.stderr
    assert completed.stderr.count("matched no function") == 1


THREADS = """
import threading
import callspan


def work(tag):
    return tag  # work


def loop(ready, go):
    ready.set()
    go.wait()
    work("before")  # before-calls


ready, go = threading.Event(), threading.Event()
early = threading.Thread(target=loop, args=(ready, go), name="early")
early.start()
ready.wait()
callspan.start_profile(["__main__.work", "__main__.late"])


def late():
    work("after")  # after-calls


go.set()
early.join()
t = threading.Thread(target=late, name="late-thread")
t.start()
t.join()
callspan.stop_profile()
"""


def test_threads_started_before_and_after(receiver, tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(THREADS)
    run([sys.executable, script], receiver, tmp_path)
    spans = receiver.wait_for_spans(3)
    named = by_name(spans)
    works = {s.attributes["thread.name"]: s for s in named["work"]}
    assert set(works) == {"early", "late-thread"}
    assert works["early"].attributes["caller.line.number"] == marker_line(script, "before-calls")
    assert works["late-thread"].attributes["caller.line.number"] == marker_line(
        script, "after-calls"
    )
    (late,) = named["late"]
    assert works["late-thread"].parent_span_id == late.span_id


STOP_WITH_CALLS_RUNNING = """
import threading
import callspan

inside, release = threading.Event(), threading.Event()


def waits():
    inside.set()
    release.wait()


def suspended():
    yield 1
    yield 2


callspan.start_profile(["__main__.waits", "__main__.suspended"])
worker = threading.Thread(target=waits, name="worker")
worker.start()
inside.wait()
gen = suspended()
next(gen)
callspan.stop_profile()  # waits() runs on the worker; suspended() is paused at a yield
release.set()
worker.join()
"""


def test_stop_ends_calls_running_on_other_threads_and_suspended(receiver, tmp_path):
    script = tmp_path / "stop_running.py"
    script.write_text(STOP_WITH_CALLS_RUNNING)
    run([sys.executable, script], receiver, tmp_path)
    named = by_name(receiver.wait_for_spans(2))
    assert {k: len(v) for k, v in named.items()} == {"waits": 1, "suspended": 1}
    assert named["waits"][0].attributes["thread.name"] == "worker"
    for (span,) in named.values():
        assert span.status_code != "STATUS_CODE_ERROR"


ASYNC = """
import asyncio
import callspan


async def fetch(n):
    await asyncio.sleep(0.01)
    await asyncio.sleep(0)
    return n


async def handler(n):
    return await fetch(n)  # handler-awaits


async def main():
    tasks = [asyncio.create_task(handler(n)) for n in range(3)]  # main-creates
    await asyncio.gather(*tasks)


with callspan.profile(include="__main__"):
    asyncio.run(main())
"""


def test_asyncio_tasks_one_span_per_call_with_task_parents(receiver, tmp_path):
    script = tmp_path / "tasks.py"
    script.write_text(ASYNC)
    run([sys.executable, script], receiver, tmp_path)
    spans = receiver.wait_for_spans(7)
    named = by_name(spans)
    assert {k: len(v) for k, v in named.items()} == {"main": 1, "handler": 3, "fetch": 3}
    by_id = {s.span_id: s for s in spans}
    (main,) = named["main"]
    for handler in named["handler"]:
        assert handler.parent_span_id == main.span_id
        assert handler.trace_id == main.trace_id
    for fetch in named["fetch"]:
        parent = by_id[fetch.parent_span_id]
        assert parent.name == "handler"
        assert fetch.attributes["caller.function.name"] == "__main__.handler"
        assert fetch.attributes["caller.line.number"] == marker_line(script, "handler-awaits")
        # One span across the awaits: it lasts at least the sleep.
        assert fetch.end_time_unix_nano - fetch.start_time_unix_nano >= 10_000_000


GENERATORS = """
import callspan


def leaf(x):
    return x


def numbers(n):
    for i in range(n):
        yield leaf(i)  # yields


def abandoned():
    try:
        yield 1
        yield 2
    finally:
        pass


def closed_outside_try():
    yield 1
    yield 2


def consume():
    total = sum(numbers(3))  # consume-iterates
    g = abandoned()
    next(g)
    g.close()
    h = closed_outside_try()
    next(h)
    h.close()
    return total


with callspan.profile(include="__main__"):
    consume()
"""


def test_generators_one_span_per_call(receiver, tmp_path):
    script = tmp_path / "gens.py"
    script.write_text(GENERATORS)
    run([sys.executable, script], receiver, tmp_path)
    # 3.13 closes a generator suspended outside any try block without running its frame (no
    # event reaches the hook); its span still ends, when the generator is freed.
    expected = {"consume": 1, "numbers": 1, "leaf": 3, "abandoned": 1, "closed_outside_try": 1}
    spans = receiver.wait_for_spans(sum(expected.values()))
    named = by_name(spans)
    assert {k: len(v) for k, v in named.items()} == expected
    (numbers,) = named["numbers"]
    assert numbers.parent_span_id == named["consume"][0].span_id
    assert numbers.attributes["caller.line.number"] == marker_line(script, "consume-iterates")
    for leaf in named["leaf"]:
        assert leaf.parent_span_id == numbers.span_id
        assert leaf.attributes["caller.line.number"] == marker_line(script, "yields")
    for closed in ("abandoned", "closed_outside_try"):
        (span,) = named[closed]
        assert span.status_code != "STATUS_CODE_ERROR"  # close() is a normal end
        assert span.parent_span_id == named["consume"][0].span_id


ASYNC_GENERATORS = """
import asyncio
import callspan


async def ticks(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def consume():
    total = 0
    async for i in ticks(3):  # consume-iterates
        total += i
    early = ticks(5)
    await early.__anext__()
    await early.aclose()  # closed mid-way: a normal end
    return total


with callspan.profile(include="__main__"):
    print("TOTAL", asyncio.run(consume()))
"""


def test_async_generators_one_span_per_call_across_awaits_and_yields(receiver, tmp_path):
    script = tmp_path / "agens.py"
    script.write_text(ASYNC_GENERATORS)
    completed = run([sys.executable, script], receiver, tmp_path)
    assert "TOTAL 3" in completed.stdout
    named = by_name(receiver.wait_for_spans(3))
    assert {k: len(v) for k, v in named.items()} == {"consume": 1, "ticks": 2}
    (consume,) = named["consume"]
    for span in named["ticks"]:
        assert span.parent_span_id == consume.span_id
        assert span.trace_id == consume.trace_id
        assert span.status_code != "STATUS_CODE_ERROR"
        assert span.attributes["caller.function.name"] == "__main__.consume"
    lines = {s.attributes["caller.line.number"] for s in named["ticks"]}
    assert marker_line(script, "consume-iterates") in lines


DECORATED = """
import callspan


@callspan.trace
def traced(x):
    return plain(x)


def plain(x):
    return x


with callspan.profile(include="__main__"):
    traced(1)
"""


def test_decorated_function_under_the_hook_gives_one_span(receiver, tmp_path):
    script = tmp_path / "decorated.py"
    script.write_text(DECORATED)
    run([sys.executable, script], receiver, tmp_path)
    spans = receiver.wait_for_spans(2)
    assert sorted(s.name for s in spans) == ["plain", "traced"]
    named = by_name(spans)
    assert named["plain"][0].parent_span_id == named["traced"][0].span_id


API = """
import callspan

callspan.stop_profile()  # without start: no-op
callspan.start_profile(["__main__.f"])
try:
    callspan.start_profile(["__main__.f"])
except RuntimeError as e:
    print("TWICE", e)
try:
    callspan.start_profile([])
except ValueError as e:
    print("EMPTY", e)


def f():
    return 1


f()
callspan.stop_profile()
callspan.stop_profile()
f()
"""


def test_api_bad_input(receiver, tmp_path):
    script = tmp_path / "api.py"
    script.write_text(API)
    completed = run([sys.executable, script], receiver, tmp_path)
    assert "TWICE callspan.start_profile: a profile is already running" in completed.stdout
    assert "EMPTY callspan.start_profile: no include glob" in completed.stdout
    spans = receiver.wait_for_spans(1)
    assert [s.name for s in spans] == ["f"]


def test_cprofile_runs_beside_the_hook(receiver, tmp_path):
    app = write_program(tmp_path)
    stats = tmp_path / "out.prof"
    run(
        callspan_run("--include", "imgpipe", "-m", "cProfile", "-o", stats, app),
        receiver,
        tmp_path,
    )
    import pstats

    profiled = {func[2] for func in pstats.Stats(str(stats)).stats}
    assert {"rotate_image", "apply_transform", "main"} <= profiled
    spans = receiver.wait_for_spans(4)
    assert {"Rotator.rotate_image", "Transformer.apply_transform"} <= {s.name for s in spans}


EXCEPTIONS = """
import callspan


class Boom(Exception):
    pass


def fails(x):
    raise Boom(f"bad {x}")  # fails-raises


def catches():
    try:
        fails(1)
    except Boom:
        pass


def gen_fails():
    yield 1
    raise KeyError("gone")  # gen-raises


def gen_thrown():
    yield 1
    yield 2


def consume():
    g = gen_fails()
    next(g)
    try:
        next(g)
    except KeyError:
        pass
    t = gen_thrown()
    next(t)
    try:
        t.throw(ValueError("thrown in"))
    except ValueError:
        pass
    never = gen_thrown()
    never.close()  # closed before it ran: nothing ran, no span


with callspan.profile(include="__main__"):
    catches()
    consume()
"""


def test_exceptions_end_spans_with_their_type_message_and_stack(receiver, tmp_path):
    script = tmp_path / "exceptions.py"
    script.write_text(EXCEPTIONS)
    run([sys.executable, script], receiver, tmp_path)
    named = by_name(receiver.wait_for_spans(5))
    assert {k: len(v) for k, v in named.items()} == {
        "catches": 1,
        "fails": 1,
        "consume": 1,
        "gen_fails": 1,
        "gen_thrown": 1,
    }
    expected = {
        "fails": ("__main__.Boom", "bad 1", "fails-raises"),
        "gen_fails": ("KeyError", "'gone'", "gen-raises"),
        "gen_thrown": ("ValueError", "thrown in", None),
    }
    for name, (type_name, message, raised_at) in expected.items():
        (span,) = named[name]
        assert span.status_code == "STATUS_CODE_ERROR", span
        event = span.event("exception").attributes
        assert event["exception.type"] == type_name
        assert event["exception.message"] == message
        if raised_at is not None:
            line = marker_line(script, raised_at)
            assert f"line {line}, in __main__.{name}" in event["exception.stacktrace"], event
    for name in ("catches", "consume"):
        assert named[name][0].status_code != "STATUS_CODE_ERROR"
    assert named["fails"][0].parent_span_id == named["catches"][0].span_id


RECURSION = """
import sys
import threading

import callspan

sys.setrecursionlimit(1_000_000)


def down(n):
    return 0 if n == 0 else 1 + down(n - 1)


def profiled_down(n):
    return 0 if n == 0 else 1 + profiled_down(n - 1)


def deep(recurse, n):
    try:
        return "OK", recurse(n)
    except RecursionError as e:
        return "RecursionError", str(e)


def report(where, outcome):
    print(where, outcome[0], outcome[1], flush=True)


callspan.start_profile(["__main__.deep", "__main__.profiled_down"])
# Deeper than an 8 MiB C stack holds when each Python call recurses on it (3.9-3.11).
report("MAIN", deep(down, 200_000))
threading.stack_size(512 * 1024)
thread = threading.Thread(target=lambda: report("THREAD", deep(profiled_down, 20_000)))
thread.start()
thread.join()
callspan.stop_profile()
print("DONE", flush=True)
"""


def test_deep_recursion_under_the_hook_raises_recursion_error_instead_of_crashing(
    receiver, tmp_path
):
    script = tmp_path / "recursion.py"
    script.write_text(RECURSION)
    completed = run([sys.executable, script], receiver, tmp_path, timeout=120)
    lines = {line.split(" ", 1)[0]: line for line in completed.stdout.splitlines()}
    assert "DONE" in lines, completed.stdout
    if sys.version_info < (3, 12):
        # 3.9/3.10 recurse on the C stack anyway, and with a frame-evaluation function
        # installed 3.11 does too: the hook refuses the call that would overflow it.
        for where in ("MAIN", "THREAD"):
            assert lines[where].startswith(f"{where} RecursionError callspan: maximum recursion")
            assert "profile hook" in lines[where]
    else:
        # sys.monitoring adds no C recursion: as without callspan.
        assert lines["MAIN"] == "MAIN OK 200000"
        assert lines["THREAD"] == "THREAD OK 20000"
    spans = receiver.wait_for_spans(2)
    assert {"deep", "profiled_down"} <= {s.name for s in spans}


DAEMONS_AT_EXIT = """
import threading
import time

import callspan

ready = threading.Barrier(5)


def tick(n):
    return n + 1


def ticks():
    n = 0
    while True:
        n = tick(n)
        time.sleep(0.0005)  # wakes again and again while the interpreter finalizes
        yield n


def poll(index):
    for n in ticks():
        if n == 20:
            ready.wait()


callspan.start_profile(["__main__"])
for index in range(4):
    threading.Thread(target=poll, args=(index,), daemon=True).start()
ready.wait()
print("EXITING", flush=True)
"""


def test_daemon_threads_inside_profiled_calls_at_exit(receiver, tmp_path):
    # CPython ends them with pthread_exit: its forced unwind crosses the hook's frames (on
    # 3.9-3.11 the frame-evaluation function under every frame of theirs).
    script = tmp_path / "daemons.py"
    script.write_text(DAEMONS_AT_EXIT)
    for _ in range(3):
        receiver.clear()
        completed = run([sys.executable, script], receiver, tmp_path)  # fails unless exit 0
        assert "EXITING" in completed.stdout
        assert len(by_name(receiver.wait_for_spans(80))["tick"]) >= 80


EVAL_FRAME_C = r"""
#include <Python.h>
#if PY_VERSION_HEX >= 0x030B0000
typedef struct _PyInterpreterFrame frame_t;
#else
typedef PyFrameObject frame_t;
#endif
PyObject *pass_through(PyThreadState *tstate, frame_t *frame, int throwflag) {
    return _PyEval_EvalFrameDefault(tstate, frame, throwflag);
}
void install(void) { _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), pass_through); }
"""

OTHER_EVAL_FRAME = """
import ctypes
import sys

import callspan

other = ctypes.PyDLL(sys.argv[1])


def before():
    return 1


def after():
    return 2


if sys.argv[2] == "installed-first":
    other.install()
    try:
        callspan.start_profile(["__main__"])
        print("STARTED", flush=True)
    except RuntimeError as e:
        print("REFUSED", e, flush=True)
    before()
    callspan.stop_profile()
else:
    callspan.start_profile(["__main__"])
    before()
    other.install()  # replaces callspan's on 3.9-3.11
    after()
    callspan.stop_profile()
    print("STOPPED", flush=True)
"""


def compile_eval_frame_function(tmp_path: Path) -> Path:
    """A pass-through PEP 523 frame-evaluation function and an ``install()`` that sets it,
    built with the machine's C compiler against this interpreter's headers."""
    import shutil
    import sysconfig

    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc or cc) to build the other frame-evaluation function")
    source = tmp_path / "other_eval_frame.c"
    source.write_text(EVAL_FRAME_C)
    library = tmp_path / "other_eval_frame.so"
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-I",
            sysconfig.get_paths()["include"],
            "-o",
            library,
            source,
        ],
        check=True,
        capture_output=True,
    )
    return library


def test_another_frame_evaluation_function_is_named(receiver, tmp_path):
    library = compile_eval_frame_function(tmp_path)
    script = tmp_path / "other_eval.py"
    script.write_text(OTHER_EVAL_FRAME)
    completed = run([sys.executable, script, library, "installed-first"], receiver, tmp_path)
    if sys.version_info >= (3, 12):
        # sys.monitoring: a frame-evaluation function is no conflict.
        assert "STARTED" in completed.stdout
        assert [s.name for s in receiver.wait_for_spans(1)] == ["before"]
        receiver.clear()
    else:
        assert "REFUSED callspan.start_profile: another frame-evaluation function" in (
            completed.stdout
        )
        assert f"pass_through() in {library}" in completed.stdout
        assert "Stop the tool that installed it" in completed.stdout
        assert receiver.span_count() == 0  # the child has exited: nothing was profiled
    # Installed over callspan's while it profiles: left in place at stop, with a warning.
    completed = run([sys.executable, script, library, "installed-after"], receiver, tmp_path)
    assert "STOPPED" in completed.stdout
    if sys.version_info >= (3, 12):
        assert sorted(s.name for s in receiver.wait_for_spans(2)) == ["after", "before"]
    else:
        assert "was replaced after callspan.start_profile() by pass_through() in" in (
            completed.stderr
        )
        assert [s.name for s in receiver.wait_for_spans(1)] == ["before"]
