"""Runs real libraries' own test suites undecorated, with every def traced, and with a control.

For each pinned library (:data:`LIBRARIES`): ``pip download --no-binary :all: --no-deps`` its
sdist into the cache (``.realcode-cache/`` at the repository root, gitignored; ``REALCODE_CACHE``
overrides), unpack it, and run its tests in child processes four ways (:data:`MODES`):

- ``plain``: undecorated;
- ``callspan``: every def of the library decorated with ``@callspan.trace`` by an import hook
  (``realcode_rewrite.py``), exporting over OTLP/gRPC to a real collector (rotel) for every call;
- ``callspan_off``: the same with ``OTEL_TRACES_SAMPLER=always_off``;
- ``control``: every def decorated with a plain ``functools.wraps`` wrapper.

Per-test outcomes come from pytest's ``--junitxml``. :func:`compare` says which tests differ
from the undecorated run. ``python tests/realcode/harness.py [LIBRARY...]`` prints the table
recorded in docs/realcode.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("REALCODE_CACHE", REPO / ".realcode-cache"))
MODES = ("plain", "callspan", "callspan_off", "control")
ISOLATED_ENV_PREFIXES = ("OTEL_", "CALLSPAN_", "PYTEST_")


@dataclass(frozen=True)
class Library:
    """A pinned sdist and how to run its own suite (as its tox.ini/Makefile does)."""

    name: str
    version: str
    packages: tuple[str, ...]  # import names whose defs are decorated
    pytest_args: tuple[str, ...]

    @property
    def sdist_stem(self) -> str:
        return f"{self.name}-{self.version}"


LIBRARIES = {
    library.name: library
    for library in (
        Library("toolz", "1.0.0", ("toolz", "tlz"), ("--doctest-modules", "toolz")),
        Library("more-itertools", "10.5.0", ("more_itertools",), ("tests",)),
        # Its conftest.py only skips *_py2 modules, with a hook argument pytest 9 no longer has.
        Library(
            "boltons",
            "25.0.0",
            ("boltons",),
            ("--noconftest", "--doctest-modules", "boltons", "tests"),
        ),
        # test_diagram and test_matplotlib_cases need railroad-diagrams, jinja2 and matplotlib.
        Library(
            "pyparsing",
            "3.2.0",
            ("pyparsing",),
            (
                "tests",
                "--ignore=tests/test_diagram.py",
                "--ignore=tests/test_matplotlib_cases.py",
            ),
        ),
    )
}
# The ones tests/test_realcode.py runs by default (fast suites); `make test-realcode` runs all.
DEFAULT_LIBRARIES = ("toolz", "more-itertools")


def source_tree(library: Library) -> Path:
    """The unpacked sdist, downloaded with pip on first use."""
    tree = CACHE / "src" / library.sdist_stem
    if tree.is_dir():
        return tree
    sdists = CACHE / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    archive = sdists / f"{library.sdist_stem}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"]
            + ["--no-deps", "--dest", str(sdists), f"{library.name}=={library.version}"],
            check=True,
        )
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        unpacking = Path(tempfile.mkdtemp(dir=CACHE))
        if sys.version_info >= (3, 12):
            tar.extractall(unpacking, filter="data")
        else:
            tar.extractall(unpacking)
    (unpacking / library.sdist_stem).rename(tree)
    unpacking.rmdir()
    return tree


@dataclass
class Run:
    """One suite run: per-test outcome ('passed', 'failed', 'error', 'skipped') and the report."""

    library: str
    mode: str
    outcomes: dict[str, str]
    report: dict
    output: str = field(repr=False, default="")


def _outcomes(junit: Path) -> dict[str, str]:
    outcomes = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        outcome = next(
            (name for tag, name in (("error", "error"), ("failure", "failed")) if tag in tags),
            "skipped" if "skipped" in tags else "passed",
        )
        # A test listed twice (an error in teardown after a pass) keeps the worse outcome.
        if outcomes.get(test) in (None, "passed", "skipped"):
            outcomes[test] = outcome
    return outcomes


def run_suite(library: Library, mode: str, otlp_endpoint: str | None, timeout=2400) -> Run:
    tree = source_tree(library)
    with tempfile.TemporaryDirectory(prefix=f"realcode-{library.name}-{mode}-") as scratch:
        junit, report = Path(scratch, "junit.xml"), Path(scratch, "report.json")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_ENV_PREFIXES)}
        env.update(
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONPYCACHEPREFIX=str(Path(scratch, "pycache")),
            # Only the plugins pytest ships: the suites need no others.
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        )
        if mode.startswith("callspan"):
            if otlp_endpoint is None:
                raise ValueError("the callspan modes export: give otlp_endpoint")
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint,
                OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                OTEL_TRACES_SAMPLER="always_off" if mode == "callspan_off" else "always_on",
                OTEL_SERVICE_NAME=f"realcode-{library.name}",
            )
        command = [
            sys.executable,
            str(HERE / "realcode_run.py"),
            "callspan" if mode.startswith("callspan") else mode,
            ",".join(library.packages),
            str(report),
            "--",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit2",
            *library.pytest_args,
        ]
        completed = subprocess.run(
            command,
            cwd=tree,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = completed.stdout + completed.stderr
        if completed.returncode != 0 or not report.exists() or not junit.exists():
            raise RuntimeError(
                f"{library.name} ({mode}) did not finish (exit {completed.returncode}):\n{output}"
            )
        return Run(library.name, mode, _outcomes(junit), json.loads(report.read_text()), output)


def compare(baseline: Run, other: Run) -> dict[str, tuple[str | None, str | None]]:
    """Tests whose outcome differs: name -> (baseline outcome, other outcome); None: absent."""
    names = set(baseline.outcomes) | set(other.outcomes)
    return {
        name: (baseline.outcomes.get(name), other.outcomes.get(name))
        for name in sorted(names)
        if baseline.outcomes.get(name) != other.outcomes.get(name)
    }


def broken(baseline: Run, other: Run) -> set[str]:
    """Tests that pass in the baseline and do not in ``other``."""
    return {
        name
        for name, (before, after) in compare(baseline, other).items()
        if before == "passed" and after != "passed"
    }


def run_library(library: Library, otlp_endpoint: str) -> dict[str, Run]:
    return {mode: run_suite(library, mode, otlp_endpoint) for mode in MODES}


def summary_rows(runs: dict[str, Run]) -> list[str]:
    plain = runs["plain"]
    counts = {outcome: 0 for outcome in ("passed", "failed", "error", "skipped")}
    for outcome in plain.outcomes.values():
        counts[outcome] += 1
    stats = runs["callspan"].report.get("stats", {})
    cells = [
        plain.library,
        f"{sum(counts.values())} ({counts['passed']} pass, {counts['skipped']} skip, "
        f"{counts['failed'] + counts['error']} fail)",
        str(runs["callspan"].report["decorated_defs"]),
        f"{stats.get('spans_exported', 0):,}",
    ]
    for mode in ("callspan", "callspan_off", "control"):
        differences = compare(plain, runs[mode])
        cells.append("identical" if not differences else f"{len(differences)} differ")
    cells += [f"{runs[mode].report['seconds']:.1f}" for mode in MODES]
    return ["| " + " | ".join(cells) + " |"]


TABLE_HEADER = (
    "| library | tests (undecorated) | defs traced | spans exported | callspan | always_off "
    "| control | s plain | s callspan | s always_off | s control |\n"
    "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|"
)


def main(names: list[str]) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from rotel import RotelAgent

    lines = [TABLE_HEADER]
    details = []
    with RotelAgent(exporter="blackhole") as agent:
        for name in names or list(LIBRARIES):
            runs = run_library(LIBRARIES[name], agent.grpc_endpoint)
            lines += summary_rows(runs)
            for mode in ("callspan", "callspan_off", "control"):
                for test, (before, after) in compare(runs["plain"], runs[mode]).items():
                    details.append(f"- {name}, {mode}: `{test}`: {before} → {after}")
    print("\n".join(lines))
    print("\n".join(details) or "\nNo test differs from the undecorated run.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
