"""Shared helpers for the benchmark scripts: command line, machine facts, memory, JSON output,
the timed call loop with its interleaved rounds, and instruction counts under callgrind.

Every script takes ``--smoke`` (seconds-long, tiny N: proves the script works, measures
nothing) and ``--json PATH`` (writes the results there as well as printing a table). Results
carry the facts needed to judge them later: the interpreter, the CPU, the load average before
and after, the callspan build that was measured and the git state of the tree.

The test helpers in ``tests/`` (the rotel collector fixture, the recording receiver) are reused,
not copied: importing this module puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, Callable

BENCHES_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCHES_DIR.parent
TESTS_DIR = REPO_DIR / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

MIB = 1024 * 1024


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark script shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="seconds-long run with tiny N: proves the script works, measures nothing",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p


# -- environment variables ---------------------------------------------------------------------

ISOLATED_ENV_PREFIXES = ("OTEL_", "CALLSPAN_")


def clean_otel_env() -> None:
    """Drops OTEL_* / CALLSPAN_* from this process so a developer's shell cannot skew a run."""
    for key in list(os.environ):
        if key.startswith(ISOLATED_ENV_PREFIXES):
            del os.environ[key]


# -- memory --------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Current resident set size (VmRSS)."""
    kib = _status_kib("VmRSS")
    if kib is None:  # not Linux: fall back to the peak, the best we have
        return peak_rss_bytes()
    return kib * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (VmHWM, i.e. ru_maxrss on Linux)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


# -- facts about the run ------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mib() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _source() -> dict[str, Any]:
    """The commit measured: git's view, or a ``.bench-source`` note in an exported tree."""
    commit = _git("rev-parse", "--short", "HEAD")
    if commit:
        return {
            "git_commit": commit,
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        }
    note = REPO_DIR / ".bench-source"
    return {
        "git_commit": note.read_text().strip() if note.is_file() else "unknown",
        "git_dirty": None,
    }


def callspan_build() -> dict[str, Any]:
    """Which callspan binary this interpreter imports (path and sha256 of the native module)."""
    try:
        import callspan
        from callspan import _callspan
    except ImportError as error:
        return {"error": str(error)}
    path = Path(_callspan.__file__)
    return {
        "version": callspan.__version__,
        "native_module": str(path),
        "native_module_sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        "native_module_mtime": time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(path.stat().st_mtime)
        ),
    }


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare two runs."""
    return {
        "python": platform.python_version(),
        "python_build": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_mib": _mem_total_mib(),
        "load_average": list(os.getloadavg()),
        **_source(),
        "callspan": callspan_build(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- timed call loops, in interleaved rounds ---------------------------------------------------

perf_counter_ns = time.perf_counter_ns


def time_function_calls(fn: Callable[[Any], Any], n: int) -> int:
    """ns for ``n`` calls ``fn(1)`` in a tight loop: the loop every per-call row times."""
    t0 = perf_counter_ns()
    for _ in repeat(None, n):
        fn(1)
    return perf_counter_ns() - t0


def time_method_calls(obj: Any, n: int) -> int:
    """ns for ``n`` calls ``obj.work(1)`` in a tight loop."""
    t0 = perf_counter_ns()
    for _ in repeat(None, n):
        obj.work(1)
    return perf_counter_ns() - t0


def nothing() -> None:
    pass


@dataclass
class Row:
    """One row of a per-call table: what it times, what it sets up and tears down around it."""

    name: str
    baseline: str  # the row whose same-round time is subtracted
    timed: Callable[[int], int]  # runs n calls, returns elapsed ns
    enter: Callable[[], None] = nothing  # before the timed loop (not timed)
    leave: Callable[[], None] = nothing  # after the timed loop (not timed)
    n: int = 0
    samples: list[float] = field(default_factory=list)  # ns per call, one per round
    counters: dict[str, int] = field(default_factory=dict)

    def measure(self, n: int) -> float:
        self.enter()
        try:
            elapsed = self.timed(n)
        finally:
            self.leave()
        return elapsed / n


def calibrate(row: Row, target_ns: float, max_calls: int = 50_000_000) -> int:
    """Calls per timed loop so that one loop of ``row`` takes about ``target_ns``."""
    n = 64
    while True:
        per_call = row.measure(n)
        if per_call * n >= target_ns / 8 or n >= max_calls:
            return max(16, math.ceil(target_ns / per_call))
        n *= 4


def measure_around(row: Row, n: int, around: Any = None) -> float:
    """One timed loop of ``n`` calls of ``row``, in ns per call; ``around(row, measure)``, if
    given, wraps it (to read counters around it) and calls ``measure`` once."""
    per_call: list[float] = []

    def measure() -> None:
        per_call.append(row.measure(n))

    if around is None:
        measure()
    else:
        around(row, measure)
    return per_call[0]


def interleaved_rounds(rows: list[Row], rounds: int, around: Any = None) -> None:
    """Each round measures every row once, in an order rotated by one per round; ``around`` as
    in :func:`measure_around`."""
    for round_index in range(rounds):
        shift = round_index % len(rows)
        for row in rows[shift:] + rows[:shift]:
            row.samples.append(measure_around(row, row.n, around))


def paired_loops(
    base: Row, other: Row, pairs: int, n: int, around: Any = None
) -> list[tuple[float, float]]:
    """(``base``, ``other``) in ns per call, once per pair of adjacent ``n``-call loops, the
    order swapped every pair. Two rows timed seconds apart differ by the host's drift, which on a
    shared machine is larger than a 15 ns difference between them; two loops a few
    milliseconds apart share it, so it cancels in the pair's difference. ``around`` as in
    :func:`measure_around`."""
    timed = []
    for index in range(pairs):
        per_call = {
            row.name: measure_around(row, n, around)
            for row in ((base, other) if index % 2 == 0 else (other, base))
        }
        timed.append((per_call[base.name], per_call[other.name]))
    return timed


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles (statistics' "inclusive" method)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def overhead_ns(row: Row, rows: list[Row]) -> float:
    """Median over rounds of (row - its baseline in the same round)."""
    if row.name == row.baseline:
        return 0.0
    base = next(r for r in rows if r.name == row.baseline).samples
    return median([a - b for a, b in zip(row.samples, base)])


def cprofile_around() -> tuple[Callable[[], None], Callable[[], None]]:
    """(enter, leave) running a fresh ``cProfile.Profile`` around a timed loop."""
    import cProfile

    profiler: list[cProfile.Profile] = []

    def enter() -> None:
        profiler[:] = [cProfile.Profile()]
        profiler[0].enable()

    return enter, lambda: profiler[0].disable()


def yappi_around() -> tuple[Callable[[], None], Callable[[], None]]:
    """(enter, leave) running yappi (its default CPU clock) around a timed loop; yappi is
    imported when the row runs, so that a run of other rows does not need it installed."""

    def enter() -> None:
        import yappi

        yappi.start()

    def leave() -> None:
        import yappi

        yappi.stop()
        yappi.clear_stats()

    return enter, leave


# -- instruction counts (valgrind's callgrind) -------------------------------------------------


def instructions_per_call(argv: list[str], calls: int, env: dict[str, str] | None = None) -> float:
    """Instructions one call costs on the main thread of ``python *argv --calls N``.

    Runs the command under ``valgrind --tool=callgrind --separate-threads=yes`` with ``N`` and
    ``2N`` calls and returns (Ir(2N) - Ir(N)) / N of the main thread: start-up and exit cancel
    out and other threads (callspan's exporter) are not counted. Instruction counts hold still
    on a loaded machine, where timings do not. OTEL_*/CALLSPAN_* are dropped from the child's
    environment (``env`` adds to it) and the hash seed is fixed: dict and set layouts, and so
    instruction counts, vary with it.
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_ENV_PREFIXES)}
    child_env.update(env or {})
    child_env["PYTHONHASHSEED"] = "0"
    counts = []
    with tempfile.TemporaryDirectory() as workdir:
        for n in (calls, 2 * calls):
            command = [sys.executable, *argv, "--calls", str(n)]
            out = Path(workdir) / f"callgrind.{n}"
            counts.append(callgrind_main_thread(command, child_env, out))
    return (counts[1] - counts[0]) / calls


# -- output ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    """Writes ``payload`` (plus the load average at the end) to ``path`` if one was given."""
    payload.setdefault("machine", {})["load_average_at_end"] = list(os.getloadavg())
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}")


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain left/right aligned text table (numbers right-aligned)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.rjust(width) if is_num else value.ljust(width)
            for value, width, is_num in zip(values, widths, numeric)
        ).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))


def print_targets(targets: list[dict[str, Any]]) -> None:
    """The targets table: what was asked, what was measured, met or not."""
    print_table(
        ["target", "measured", "limit", "met"],
        [[t["target"], t["measured"], t["limit"], "yes" if t["met"] else "NO"] for t in targets],
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# -- instruction counts ----------------------------------------------------------------------------


def callgrind_main_thread(command: list[str], env: dict[str, str], out: Path) -> int:
    """Instructions the main thread of ``command`` executed, counted by valgrind's callgrind
    (``--separate-threads=yes``: the exporter's threads are counted apart and left out). Run
    with ``PYTHONHASHSEED=0``: dict and set layouts, and so the counts, vary with the seed."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            *command,
        ],
        capture_output=True,
        text=True,
        env={**env, "PYTHONHASHSEED": "0"},
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited with {done.returncode}:\n{done.stderr}")
    # Thread 1 is the main thread; its file ends in -01.
    with open(f"{out}-01") as counts:
        for line in counts:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}-01")
