# callspan's one entry point. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.DEFAULT_GOAL := help
.PHONY: help venv install example test test-rust test-python lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.deps ## create .venv with the build and test dependencies

install: venv ## build callspan (release) and install it into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet

example: install ## install, then run examples/image_pipeline.py
	$(PY) examples/image_pipeline.py

test-rust: ## Rust unit tests (the binding crate is tested through Python)
	cargo test --workspace --exclude callspan-python

test-python: install ## Python end-to-end tests against real OTLP receivers and rotel
	$(PY) -m pytest tests -q

test: test-rust test-python ## every test: Rust and Python

lint: venv ## rustfmt, clippy -D warnings, ruff
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests examples
	$(VENV)/bin/ruff format --check python tests examples

fmt: venv ## format Rust and Python
	cargo fmt --all
	$(VENV)/bin/ruff format python tests examples
	$(VENV)/bin/ruff check --fix python tests examples

clean: ## remove build outputs and the venv
	rm -rf target $(VENV) callspan-spans.jsonl
