# callspan's one entry point. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.DEFAULT_GOAL := help
.PHONY: help venv install example test test-rust test-python test-pythons lint fmt clean system-deps view-png test-realcode

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

# System packages the tests use, from Debian, installed when missing (as root: CI and the dev
# machines): chromium for the caller view's browser tests (Playwright drives it; its own browser
# download cannot work here), docker-compose (a compose implementation) to check deploy/.
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -y -qq
$(VENV)/.system-deps: | $(VENV)/.deps
	@missing() { [ -x /usr/bin/chromium ] || echo chromium; \
	  command -v docker-compose >/dev/null || echo docker-compose; }; \
	need=$$(missing | tr '\n' ' '); \
	if [ -n "$$need" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "installing $$need(apt-get)"; \
	  $(APT_GET) update >/dev/null && \
	  { [ -x /usr/bin/chromium ] || $(APT_GET) install chromium >/dev/null; } && \
	  { command -v docker-compose >/dev/null || \
	    $(APT_GET) install --no-install-recommends docker-compose >/dev/null; }; \
	  need=$$(missing | tr '\n' ' '); \
	fi; \
	if [ -n "$$need" ]; then \
	  echo "could not install $$(echo $$need) (needs root and Debian's apt): the tests that use them skip"; \
	else touch $@; fi

system-deps: $(VENV)/.system-deps ## apt-get install chromium and docker-compose when missing

venv: $(VENV)/.deps ## create .venv with the build and test dependencies

install: venv ## build callspan (release) and install it into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet

example: install ## install, then run examples/image_pipeline.py
	$(PY) examples/image_pipeline.py

test-rust: ## Rust unit tests (the binding crate is tested through Python)
	cargo test --workspace --exclude callspan-python

test-python: install $(VENV)/.system-deps ## Python end-to-end tests against real OTLP receivers and rotel
	$(PY) -m pytest tests -q

test: test-rust test-python ## every test: Rust and Python

# Every pinned library of tests/realcode (the suite itself runs the two fastest); results go in
# docs/realcode.md (`$(PY) tests/realcode/harness.py` prints the table).
test-realcode: install ## real libraries' suites, every def traced (tests/realcode, all libraries)
	REALCODE_LIBRARIES=all $(PY) -m pytest tests/test_realcode.py -v

# Other CPython versions from pyenv, each in its own venv (.venv-3.X); CI runs all four.
PYVERSIONS ?= 3.9 3.10 3.12 3.13
# Every version's tests use the main .venv's rotel-agent: rotel has no wheel for 3.9, and its
# 3.10 wheel's binary needs a shared libpython, which pyenv builds lack. tests/test_realcode.py
# runs toolz's suite on these versions and both default libraries on the main .venv's (`make
# test`): more-itertools' traced suite is the slowest test there is (a minute and a half under
# load), and what it checks of TracedFunction is the same C type on every version.
REALCODE_OTHER_PYTHONS ?= toolz
test-pythons: venv ## the Python suite on each of PYVERSIONS (pyenv interpreters)
	@rotel=$$(ls $(VENV)/lib/python3*/site-packages/rotel/rotel-agent | head -1); \
	for v in $(PYVERSIONS); do \
	  py=$$(ls -d $(HOME)/.pyenv/versions/$$v.*/bin/python 2>/dev/null | sort -V | tail -1); \
	  if [ -z "$$py" ]; then echo "CPython $$v not found under ~/.pyenv/versions"; exit 1; fi; \
	  echo "== CPython $$v ($$py)"; \
	  TEST_ROTEL_AGENT_BINARY=$(CURDIR)/$$rotel REALCODE_LIBRARIES=$(REALCODE_OTHER_PYTHONS) \
	    $(MAKE) --no-print-directory test-python PYTHON=$$py VENV=.venv-$$v || exit 1; \
	done

# stubtest imports the built module, so lint builds it first (`install`).
lint: install ## rustfmt, clippy, rustdoc (warnings denied), ruff, stubtest of _callspan.pyi
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
	$(VENV)/bin/ruff check python tests examples
	$(VENV)/bin/ruff format --check python tests examples
	$(PY) -m mypy.stubtest callspan --allowlist tests/stubtest-allowlist.txt

fmt: venv ## format Rust and Python
	cargo fmt --all
	$(VENV)/bin/ruff format python tests examples
	$(VENV)/bin/ruff check --fix python tests examples

clean: ## remove build outputs and the venvs
	rm -rf target $(VENV) .venv-3.* callspan-spans.jsonl callspan-spans.html

# -- benchmarks (docs/performance.md) ------------------------------------------------------------
.PHONY: bench-deps bench bench-smoke bench-overhead bench-versions bench-versions-core bench-view
BENCH_OUT ?= bench-results

# The benchmarks' OpenTelemetry SDK pins need Python >= 3.10; on 3.9 the smoke test skips.
$(VENV)/.bench-deps: $(VENV)/.deps benches/requirements.txt
	if $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then \
	  $(PIP) install --quiet -r benches/requirements.txt; fi
	touch $@

# The smoke test of the benchmarks (tests/test_benchmarks_smoke.py) needs the OTel SDK and yappi.
test-python: $(VENV)/.bench-deps

# callspan's own cost on every CPython 3.9-3.13 (the test venvs: make test-pythons first).
bench-versions-core: install ## callspan vs cProfile on each CPython 3.9-3.13 (benches/versions.py)
	@for v in 3.9 3.10 3.11 3.12 3.13; do \
	  py=$$( [ -x .venv-$$v/bin/python ] && echo .venv-$$v/bin/python || echo $(PY) ); \
	  $$py -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "'$$v'".split("."))))' || continue; \
	  mkdir -p $(BENCH_OUT)/$$v; $$py benches/versions.py --json $(BENCH_OUT)/$$v/versions.json; \
	done

bench-deps: $(VENV)/.bench-deps ## install the benchmark dependencies (OTel SDK, yappi) into .venv

bench: install bench-deps ## full benchmarks: Rust micro, overhead, throughput, memory (minutes)
	cargo bench -p callspan-core -p callspan-otlp
	$(PY) benches/overhead.py --json $(BENCH_OUT)/overhead.json
	$(PY) benches/throughput.py --json $(BENCH_OUT)/throughput.json
	$(PY) benches/memory.py --json $(BENCH_OUT)/memory.json

# Every def of pyparsing traced, next to cProfile, yappi, viztracer and the OTel SDK (docs/performance.md).
.PHONY: bench-realcode
bench-realcode: install bench-deps ## the real-workload benchmark (benches/realcode.py; minutes)
	$(PY) benches/realcode.py --json $(BENCH_OUT)/realcode.json

bench-smoke: install bench-deps ## every benchmark in seconds-long smoke mode (proves they run)
	cargo bench -p callspan-core -p callspan-otlp -- --test
	$(PY) benches/overhead.py --smoke --json $(BENCH_OUT)/smoke/overhead.json
	$(PY) benches/throughput.py --smoke --json $(BENCH_OUT)/smoke/throughput.json
	$(PY) benches/memory.py --smoke --json $(BENCH_OUT)/smoke/memory.json

# issue 14's floor targets (sampled <= 0.6 x cProfile, unsampled <= 0.15 x, method <= function),
# each version's ratios from one run of benches/overhead.py.
bench-overhead: install bench-deps ## per-call overhead vs cProfile on CPython 3.11, 3.12 and 3.13, one run each
	$(PY) benches/overhead.py --json $(BENCH_OUT)/3.11/overhead.json
	BENCHES=overhead benches/run_all_versions.sh 3.12 3.13

bench-versions: ## the Python benchmarks on CPython 3.12 and 3.13 from pyenv (.venv-3.12, .venv-3.13)
	benches/run_all_versions.sh

# -- the caller view (docs/view.md) ----------------------------------------------------------------
view-png: install $(VENV)/.system-deps ## redraw docs/view.png: the quickstart's page in headless Chromium
	$(PY) benches/view.py --screenshot docs/view.png

bench-view: install $(VENV)/.system-deps ## time `callspan view` and the page's load on 100,000 spans
	$(PY) benches/view.py --json $(BENCH_OUT)/view.json
