# `make install` then `make test`: the README's two commands.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

# The oldest pyln-client and pyln-proto pyproject.toml accepts, for `make compat`.
OLDEST_PYLN := 25.12
OLDEST_VENV := .venv-oldest

# Where make install-man puts the manual pages: man finds ~/.local/share/man when
# ~/.local/bin is on PATH (man-db derives its search path from PATH).
MANDIR ?= $(HOME)/.local/share/man

.PHONY: install test unit protocol integration lint typecheck check compat man install-man bench clean

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
	$(VPY) -m ruff check custommsg tests bench tools plugin.py custommsg.py

# The manual pages, from the JSON schemas (tests/unit/test_manpages.py fails when they differ).
man: install
	$(VPY) tools/schema2man.py doc/schemas doc/man

install-man:
	mkdir -p $(MANDIR)/man7
	cp doc/man/lightning-custommsg-*.7 $(MANDIR)/man7/

typecheck: install
	$(VPY) -m mypy

check: lint typecheck test

# The unit and protocol tiers against the oldest supported pyln-client (`make test`
# runs them against the newest that pyproject.toml accepts).
compat: $(OLDEST_VENV)/.installed
	CUSTOMMSG_VENV=$(OLDEST_VENV) $(OLDEST_VENV)/bin/python -m pytest -ra tests/unit tests/protocol

$(OLDEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install --quiet 'pyln-client==$(OLDEST_PYLN).*' 'pyln-proto==$(OLDEST_PYLN).*' \
		'pytest>=8' 'jsonschema>=4' 'hypothesis>=6.100' -e .
	$(OLDEST_VENV)/bin/python -c 'from importlib.metadata import version as v; \
		assert v("pyln-client").lstrip("v").startswith("$(OLDEST_PYLN)"), v("pyln-client")'
	touch $@

bench: install
	$(VPY) -m pytest -s -q -p no:cacheprovider -o python_files='bench_*.py' bench

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
