# `make install` then `make test`: the README's two commands.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: install test unit protocol integration lint typecheck check bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(VPY) -m pytest -ra tests

unit: install
	$(VPY) -m pytest -ra tests/unit

protocol: install
	$(VPY) -m pytest -ra tests/protocol

integration: install
	$(VPY) -m pytest -ra tests/integration

lint: install
	$(VPY) -m ruff check custommsg tests bench plugin.py

typecheck: install
	$(VPY) -m mypy

check: lint typecheck test

bench: install
	$(VPY) -m pytest -s -q -p no:cacheprovider -o python_files='bench_*.py' bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
