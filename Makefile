# The two README commands: `make run` and `make test`. Both create .venv on a fresh machine and
# re-install only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/monitor.toml

.PHONY: run test lint demo bench soak fuzz clean

# An older python3 would make a venv that pip then refuses, and that a second try with
# PYTHON=python3.11 would reuse: say so before making it.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "paper-monitor needs Python 3.11+; $(PYTHON) is $$($(PYTHON) --version 2>&1):" \
	       "name another, e.g. make $(or $(MAKECMDGOALS),run) PYTHON=python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/paper-monitor run --config $(CONFIG)

demo: $(VENV)/.installed
	$(BIN)/paper-monitor demo

# Two workers: most tests wait on real servers and daemon processes (10 min -> 5.5 min on 2 cores).
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -n 2

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check monitor tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	for b in benchmarks/*.py; do [ $$b = benchmarks/soak.py ] || $(BIN)/python $$b || exit 1; done

soak: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/soak.py

# Coverage-guided fuzzing (tests/fuzz.py): `make fuzz TARGET=parse|config|query|match FUZZ_SECONDS=600`.
fuzz: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet 'atheris>=2.3'
	$(BIN)/python tests/fuzz.py $(or $(TARGET),parse) -max_total_time=$(or $(FUZZ_SECONDS),300)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
