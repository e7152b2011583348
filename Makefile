# Two commands for a fresh machine with only Python 3.11+:
#   make demo   — the whole bot against an embedded Synapse and a simulated usage API
#   make test   — everything CI runs (lint, types, tests against real servers)
# Each target creates what it needs (virtualenvs, the throwaway Synapse) by itself.

PYTHON ?= python3
VENV ?= .venv
SYNAPSE_VENV ?= .venv-synapse
BIN := $(VENV)/bin
export SYNAPSE_PYTHON ?= $(abspath $(SYNAPSE_VENV))/bin/python
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit bench venv synapse clean lock

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

# Synapse pins dependencies that clash with ours: it gets its own virtualenv.
$(SYNAPSE_VENV)/bin/.installed:
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install -q --upgrade pip
	$(SYNAPSE_VENV)/bin/pip install -q "matrix-synapse>=1.100"
	touch $@

venv: $(BIN)/.installed
synapse: $(SYNAPSE_VENV)/bin/.installed

lint: venv
	$(BIN)/ruff check function shim devstack tests scripts
	$(BIN)/ruff format --check function shim devstack tests scripts

typecheck: venv
	$(BIN)/mypy function shim devstack

unit: venv synapse
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

demo: venv synapse
	$(BIN)/python -m scripts.demo

bench: venv synapse
	$(BIN)/python -m scripts.bench

# The image's hash-pinned lock (Dockerfile: pip install --require-hashes --no-deps).
# Runtime dependencies with every extra the image installs, plus setuptools for the
# project's own build (no build isolation in the image, so nothing unhashed is fetched).
# Resolved for the image (Linux, Python 3.11); the hashes cover every file of each
# pinned version, so the arm64 build checks its wheels too.
lock: venv
	$(BIN)/pip install -q uv
	echo "setuptools>=69" | $(BIN)/uv pip compile pyproject.toml - --extra all --generate-hashes \
		--python-platform linux --python-version 3.11 --custom-compile-command "make lock" -o requirements.lock

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .demo
