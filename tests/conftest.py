"""Shared pytest fixtures: a recording OTLP receiver, rotel in front of it, and a script runner.

End-to-end tests run real Python scripts in child processes (``run_script``) so that callspan is
exercised the way users run it: import, decorate, exit. Each child exports to a fresh receiver.
"""

from __future__ import annotations

import pytest
from e2e_support import run_python_script
from otlp_receiver import RecordingReceiver
from rotel import RotelAgent


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Remember each phase's outcome on the test item, so fixtures can add logs on failure.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _test_failed(request) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def receiver():
    """A fresh RecordingReceiver (gRPC + OTLP/HTTP) for one test."""
    with RecordingReceiver(http=True) as fresh_receiver:
        yield fresh_receiver


@pytest.fixture
def rotel_forwarding_to_receiver(receiver, request):
    """rotel receiving OTLP on its own ports and forwarding over gRPC to ``receiver``."""
    agent = RotelAgent(
        exporter="otlp", exporter_endpoint=receiver.endpoint, exporter_protocol="grpc"
    )
    agent.start()
    try:
        yield agent
    finally:
        if _test_failed(request):
            print(f"--- rotel output ({' '.join(agent.command())}) ---\n{agent.log_text()}")
        agent.stop()


@pytest.fixture
def run_script(receiver, tmp_path):
    """Run a Python script in a child process exporting to ``receiver``; returns CompletedProcess.

    ``path_or_source``: a path (Path, or str naming an existing ``.py`` file; bare names are looked
    up in tests/scripts) or the source text of a script. ``check=True`` fails the test, showing
    stdout and stderr, if the child exits non-zero or runs longer than ``timeout`` seconds.
    """

    def run(path_or_source, env=None, timeout=60, check=True, args=()):
        return run_python_script(
            path_or_source,
            receiver.endpoint,
            env=env,
            timeout=timeout,
            check=check,
            args=args,
            workdir=tmp_path,
        )

    return run
