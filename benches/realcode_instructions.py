"""The real workload of ``benches/realcode.py`` in instructions (valgrind's callgrind), which a
loaded machine cannot disturb the way it disturbs time.

For each row — undecorated, cProfile, callspan ``always_off``, callspan sampled (the default
sampler, exporting over OTLP/gRPC to rotel started here) — it runs that row's child of
``benches/realcode.py`` under ``valgrind --tool=callgrind`` twice, with N and 3N inputs, and
reports the main thread's instructions for the 2N inputs in between (start-up, the rewriting of
pyparsing at import and the exit cancel out), and their ratio to the undecorated and cProfile
rows. The exporter's threads are not counted: on an idle second core they run beside the main
thread; on a loaded machine they compete with it (the timing benchmark shows that).

    python benches/realcode_instructions.py [--inputs N] [--json PATH]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import benchkit
import realcode_workload

ROWS = {
    "undecorated": ("undecorated", {}),
    "cprofile": ("cprofile", {}),
    "callspan_always_off": ("callspan", {"OTEL_TRACES_SAMPLER": "always_off"}),
    "callspan_sampled": ("callspan", {}),
}
REALCODE = str(benchkit.BENCHES_DIR / "realcode.py")
WARMUP = 4


def main() -> None:
    p = benchkit.parser(__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=10, help="N (runs N and 3N inputs)")
    args = p.parse_args()
    if args.smoke:
        args.inputs = 1
    benchkit.clean_otel_env()
    machine = benchkit.machine()
    realcode_workload.harness.source_tree(realcode_workload.LIBRARY)
    from rotel import RotelAgent

    results = {}
    with RotelAgent(exporter="blackhole") as agent, tempfile.TemporaryDirectory() as scratch:
        base_env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": agent.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        for name, (kind, env) in ROWS.items():
            counts = []
            for inputs in (args.inputs, 3 * args.inputs):
                out = Path(scratch, f"{name}.{inputs}")
                command = [sys.executable, REALCODE, "--child", kind, "--inputs", str(inputs)]
                # The same warm-up in both runs, so that it cancels out.
                command += ["--warmup", str(WARMUP)]
                counts.append(
                    benchkit.callgrind_main_thread(
                        [*command, "--out", f"{out}.json"], {**base_env, **env}, out
                    )
                )
            results[name] = counts[1] - counts[0]
            print(f"{name}: {results[name]:,} instructions", file=sys.stderr)
    rows = [
        {
            "row": name,
            "instructions": ir,
            "x_undecorated": ir / results["undecorated"],
            "x_cprofile": ir / results["cprofile"],
        }
        for name, ir in results.items()
    ]
    print(f"main-thread instructions for inputs {args.inputs}..{3 * args.inputs}")
    benchkit.print_table(
        ["row", "instructions", "x undecorated", "x cProfile"],
        [[r["row"], r["instructions"], r["x_undecorated"], r["x_cprofile"]] for r in rows],
    )
    benchkit.write_json(
        args.json,
        {
            "benchmark": "realcode_instructions",
            "smoke": args.smoke,
            "machine": machine,
            "inputs": [args.inputs, 3 * args.inputs],
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
