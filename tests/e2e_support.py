"""Test-side helpers for the end-to-end scripts: run them, read their output, find marked lines,
pick spans.

Scripts print ``FACTS {json}`` lines and end with ``json.dumps(callspan.stats())`` (see
scripts/scriptkit.py). Call sites are marked ``# CALL:<name>`` in the scripts' source, so expected
line numbers are found by searching the source instead of being hard-coded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from otlp_receiver import ReceivedSpan

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
FACTS_PREFIX = "FACTS "
# Environment prefixes that change what a child exports; a developer's shell must not leak them in.
ISOLATED_ENV_PREFIXES = ("OTEL_", "CALLSPAN_")
STATS_KEYS = {
    "spans_started",
    "spans_sampled",
    "spans_exported",
    "spans_dropped",
    "export_errors",
    "queue_len",
}


# -- running scripts -------------------------------------------------------------------------------


def script_env(endpoint: str, overrides: dict[str, str | None] | None = None) -> dict[str, str]:
    """Environment for a child script exporting to ``endpoint``; ``overrides`` win, None removes."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(ISOLATED_ENV_PREFIXES)
    }
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            # Say gRPC explicitly: the spec's default protocol for SDKs is http/protobuf.
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            # The scripts import their helper modules (imgpipe, scriptkit, ...) from tests/scripts.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(SCRIPTS_DIR), os.environ.get("PYTHONPATH")])
            ),
            "PYTHONUNBUFFERED": "1",
            # Keep tests/scripts free of __pycache__ from the children's imports.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def script_path(path_or_source, workdir: Path) -> Path:
    """A script file: an existing path, a bare name in tests/scripts, or source text written out."""
    if isinstance(path_or_source, Path):
        return path_or_source.resolve()
    text = str(path_or_source)
    if "\n" not in text and text.endswith(".py"):
        for candidate in (Path(text), SCRIPTS_DIR / text):
            if candidate.is_file():
                return candidate.resolve()
        raise FileNotFoundError(text)
    inline = Path(workdir) / "inline_script.py"
    inline.write_text(text)
    return inline.resolve()


def run_python_script(
    path_or_source, endpoint, env=None, timeout=60, check=True, args=(), workdir=None
):
    """Run a script with ``sys.executable`` in a child process exporting to ``endpoint``.

    Returns the CompletedProcess (text stdout/stderr). With ``check``, a non-zero exit fails the
    test showing both streams; running past ``timeout`` seconds always does (the child is killed).
    """
    __tracebackhide__ = True  # a failure shows the child's output, not this helper's source
    workdir = Path(workdir) if workdir is not None else SCRIPTS_DIR
    script = script_path(path_or_source, workdir)
    try:
        completed = subprocess.run(
            [sys.executable, str(script), *map(str, args)],
            env=script_env(endpoint, env),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,  # the exit status is judged below, with the output shown
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"{script.name} still ran after {timeout}s (killed)\n"
            f"--- stdout ---\n{_text(expired.stdout)}\n--- stderr ---\n{_text(expired.stderr)}"
        )
    if check and completed.returncode != 0:
        pytest.fail(
            f"{script.name} exited with {completed.returncode}\n"
            f"--- stdout ---\n{completed.stdout}\n--- stderr ---\n{completed.stderr}"
        )
    return completed


def _text(output) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


# -- reading output and spans ----------------------------------------------------------------------


@dataclass
class ScriptOutput:
    facts: dict
    stats: dict | None  # None when the script did not print stats last


def parse_output(stdout: str) -> ScriptOutput:
    facts: dict = {}
    lines = [line for line in stdout.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(FACTS_PREFIX):
            facts.update(json.loads(line[len(FACTS_PREFIX) :]))
    stats = None
    if lines and not lines[-1].startswith(FACTS_PREFIX):
        try:
            candidate = json.loads(lines[-1])
        except json.JSONDecodeError:
            candidate = None
        if isinstance(candidate, dict):
            stats = candidate
    return ScriptOutput(facts, stats)


def marker_line(path: str | Path, marker: str) -> int:
    """1-based line of the unique ``# CALL:<marker>`` (or ``# RAISE:...``) comment in ``path``."""
    kind, _, name = marker.rpartition(":") if ":" in marker else ("CALL", "", marker)
    pattern = re.compile(rf"#\s*{re.escape(kind)}:{re.escape(name)}\b")
    hits = [
        number
        for number, line in enumerate(Path(path).read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert len(hits) == 1, f"marker {kind}:{name} found on lines {hits} of {path}"
    return hits[0]


def calls_from(spans: list[ReceivedSpan], path: str | Path, marker: str) -> list[ReceivedSpan]:
    """Spans whose caller is the call site marked ``# CALL:<marker>`` in ``path``."""
    line = marker_line(path, marker)
    return [
        span
        for span in spans
        if span.attributes.get("caller.line.number") == line
        and Path(str(span.attributes.get("caller.file.path", ""))) == Path(path)
    ]


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def describe(spans: list[ReceivedSpan]) -> str:
    """One line per span, for assertion messages."""
    lines = []
    for span in spans:
        attributes = span.attributes
        caller = f"{attributes.get('caller.function.name')}@{attributes.get('caller.line.number')}"
        lines.append(
            f"  {span.name} span={span.span_id} parent={span.parent_span_id} caller={caller} "
            f"class={attributes.get('caller.class.name')}"
        )
    return "\n".join(lines)
