"""Child process of the harness: installs the mode's import hook, runs pytest, reports.

Usage: ``python realcode_run.py MODE PACKAGES REPORT_JSON -- PYTEST_ARGS...`` with MODE one of
``plain``, ``callspan``, ``control`` (the sampler comes from OTEL_TRACES_SAMPLER), PACKAGES
comma-separated import names. Run with the library's source tree as the working directory.
"""

import json
import os
import sys
import time


def main() -> int:
    mode, packages, report_path, separator, *pytest_args = sys.argv[1:]
    assert separator == "--", sys.argv
    import realcode_rewrite

    if mode != "plain":
        realcode_rewrite.install(packages.split(","), mode)
    sys.path.insert(0, os.getcwd())
    import pytest

    started = time.monotonic()
    status = int(pytest.main(pytest_args))
    report = {
        "exit_status": status,
        "seconds": time.monotonic() - started,
        "decorated_defs": realcode_rewrite.decorated_defs,
    }
    if mode == "callspan":
        import callspan

        report["flushed"] = callspan.flush(60)
        report["stats"] = callspan.stats()
    with open(report_path, "w") as out:
        json.dump(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
