"""Real libraries' own test suites, every function traced: nothing may change (tests/realcode).

Each library's suite runs undecorated, with every def decorated by ``@callspan.trace`` exporting
every call to rotel, with ``OTEL_TRACES_SAMPLER=always_off``, and with a ``functools.wraps``
control wrapper. The per-test outcomes of the traced runs must equal the undecorated run's.
``make test`` runs the libraries in ``harness.DEFAULT_LIBRARIES`` (``make test-pythons``, the other
CPythons, only toolz: ``REALCODE_OTHER_PYTHONS``); ``make test-realcode`` runs all of them
(``REALCODE_LIBRARIES=all``, or a comma-separated list of names).
"""

from __future__ import annotations

import os

import pytest
from realcode import harness
from rotel import RotelAgent

_CHOSEN = os.environ.get("REALCODE_LIBRARIES", ",".join(harness.DEFAULT_LIBRARIES))
LIBRARIES = list(harness.LIBRARIES) if _CHOSEN == "all" else _CHOSEN.split(",")


@pytest.fixture(scope="module")
def collector():
    with RotelAgent(exporter="blackhole") as agent:
        yield agent


@pytest.mark.parametrize("name", LIBRARIES)
def test_traced_library_suite_passes_exactly_as_undecorated(name, collector):
    runs = harness.run_library(harness.LIBRARIES[name], collector.grpc_endpoint)
    plain = runs["plain"]
    assert plain.outcomes, f"{name}: no tests ran\n{plain.output[-3000:]}"
    assert any(outcome == "passed" for outcome in plain.outcomes.values())
    for mode in ("callspan", "callspan_off"):
        run = runs[mode]
        assert run.report["decorated_defs"] > 0, f"{name} ({mode}): the hook decorated nothing"
        differences = harness.compare(plain, run)
        assert not differences, f"{name} ({mode}) differs: {differences}\n{run.output[-5000:]}"
    # Nothing callspan breaks may be left to a control that breaks it too: callspan breaks none.
    assert harness.broken(plain, runs["callspan"]) <= harness.broken(plain, runs["control"])
    # Every sampled call was exported or counted as dropped, and the collector took every request.
    stats = runs["callspan"].report["stats"]
    assert stats["spans_sampled"] > 0, stats
    assert stats["spans_exported"] + stats["spans_dropped"] == stats["spans_sampled"], stats
    assert stats["export_errors"] == 0, stats
    assert runs["callspan_off"].report["stats"]["spans_sampled"] == 0
