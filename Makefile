# The two commands that matter: `make demo` and `make test`. Everything they need is
# installed from this repository's own files (requirements*.txt, package-lock.json).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint unit integration devstack clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(PY) -m devstack.demo

test: install lint
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

unit: install
	$(PY) -m pytest tests/unit

integration: install
	$(PY) -m pytest tests/integration

devstack: install
	$(PY) -m devstack up

clean:
	rm -rf $(VENV) node_modules .devstack artifacts .pytest_cache .ruff_cache
