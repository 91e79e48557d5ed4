#!/usr/bin/env bash
# Runs the Python benchmarks on other CPython versions from pyenv (default: 3.12 and 3.13).
#
# For each version it creates .venv-X.Y from ~/.pyenv/versions/X.Y.*, installs the dev and
# benchmark requirements, release-builds callspan into it (maturin develop, in its own cargo
# target dir target/pyX.Y so that it never invalidates the main build), and runs overhead,
# throughput and memory, writing JSON to bench-results/X.Y/ (add --smoke for a quick check).
#
#   benches/run_all_versions.sh [--smoke] [X.Y ...]
#
# BENCHES="overhead" (a space-separated subset of "overhead throughput memory") runs fewer.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=()
versions=()
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=(--smoke) ;;
        *) versions+=("$arg") ;;
    esac
done
[ ${#versions[@]} -gt 0 ] || versions=(3.12 3.13)

for version in "${versions[@]}"; do
    base=$(ls -d "$HOME"/.pyenv/versions/"$version".* 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$base" ] || [ ! -x "$base/bin/python$version" ]; then
        echo "no CPython $version under ~/.pyenv/versions" >&2
        exit 1
    fi
    venv=".venv-$version"
    echo "== CPython $version ($base) in $venv"
    [ -x "$venv/bin/python" ] || "$base/bin/python$version" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r requirements-dev.txt -r benches/requirements.txt
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/py$version}" VIRTUAL_ENV="$PWD/$venv" \
        "$venv/bin/maturin" develop --release --quiet
    # The rotel-agent binary of the cp3XX wheels links libpython3.XX.so, which pyenv keeps in
    # its own lib/ (the system has only the default Python's): let the loader find it.
    export LD_LIBRARY_PATH="$base/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    out="bench-results/$version"
    [ ${#smoke[@]} -eq 0 ] || out="$out/smoke"
    for bench in ${BENCHES:-overhead throughput memory}; do
        "$venv/bin/python" "benches/$bench.py" "${smoke[@]}" --json "$out/$bench.json"
    done
done
