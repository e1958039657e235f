# Two entry points (see README): `make study` runs the main study, `make test` runs the tests;
# `make lint` runs ruff (lint + format check) and mypy, as CI does.
# Both create .venv on first use and install the package with its test, UCR and Ray extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: study test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test,ucr,ray]"
	touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	$(PY) studies/noise_robustness.py

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) results
