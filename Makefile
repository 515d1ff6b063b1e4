# The two commands that matter: `make demo` and `make test`. Everything they need is
# installed from this repository's own files (requirements*.txt, package-lock.json).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install install-browser demo test lint checkov unit integration infra devstack reliability bench clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt tools/requirements-infra.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt -r tools/requirements-infra.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium renders cards and drives the history page tests (root, as in CI).
install-browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

demo: install install-browser
	$(PY) -m devstack.demo

test: install install-browser lint checkov
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

# Security checks of infra/ with checkov, in its own virtualenv (it pins conflicting packages).
checkov:
	PYTHON=$(PYTHON) tools/checkov.sh

infra: install checkov
	$(PY) -m pytest tests/infra

unit: install
	$(PY) -m pytest tests/unit

integration: install
	$(PY) -m pytest tests/integration

devstack: install
	$(PY) -m devstack up

clean:
	rm -rf $(VENV) .venv-checkov node_modules .devstack artifacts .pytest_cache .ruff_cache

# Every fault scenario on the devstack (make test runs a fast subset), then RELIABILITY.md.
reliability: install install-browser
	RELIABILITY_FULL=1 FUZZ_EXAMPLES=3000 $(PY) -m pytest tests/reliability tests/unit/test_fuzz_rows.py -p no:cacheprovider; status=$$?; \
	$(PY) tools/reliability_report.py artifacts/reliability/results.json RELIABILITY.md && exit $$status

# A benchmark, not a test: it reports (BENCHMARKS.md), never fails on noise. ~1 hour on 2 cores;
# `make bench BENCH_ARGS=--quick` takes minutes. See tools/bench.py --help.
bench: install
	$(PY) tools/bench.py $(BENCH_ARGS)
