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

.PHONY: demo test lint typecheck unit bench venv synapse clean lock image-test

# Installed from hash-pinned locks only, like the image: requirements-test.lock is
# requirements.lock (what the image ships, to the version) plus the test extra, every file
# sha256-checked, nothing resolved on the day; then the project itself, editable, with no
# dependencies and no build isolation (its build backend is in the lock). uv installs when
# it is on PATH (seconds), pip otherwise (what a bare Python has); the same files either way.
INSTALL = $(if $(shell command -v uv 2>/dev/null),uv pip install -q --python $(1)/bin/python,$(1)/bin/pip install -q)

$(BIN)/.installed: pyproject.toml requirements-test.lock
	$(PYTHON) -m venv --clear $(VENV)
	$(call INSTALL,$(VENV)) --require-hashes --no-deps -r requirements-test.lock
	$(call INSTALL,$(VENV)) --no-deps --no-build-isolation -e .
	touch $@

# Synapse pins dependencies that clash with ours: it gets its own virtualenv, from its own
# hash-pinned lock (a new Synapse release reaches the tests through `make lock`, not overnight).
$(SYNAPSE_VENV)/bin/.installed: requirements-synapse.lock
	$(PYTHON) -m venv --clear $(SYNAPSE_VENV)
	$(call INSTALL,$(SYNAPSE_VENV)) --require-hashes --no-deps -r requirements-synapse.lock
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

# The image built from the Dockerfile (podman build --isolation=chroot, on a debootstrap
# stand-in for the base) and every entry point run inside it as 65532 on a read-only root,
# against the dev stack; prints its size. Root, apt-get and the Debian mirror needed.
image-test: venv synapse
	$(BIN)/python -m scripts.image_test

# The hash-pinned locks, all resolved with uv for Linux, Python 3.11:
# - requirements.lock, the image's (Dockerfile: pip install --require-hashes --no-deps):
#   runtime dependencies with every extra the image installs, plus setuptools for the
#   project's own build (no build isolation in the image, so nothing unhashed is fetched).
#   The hashes cover every file of each pinned version, so the arm64 build checks its wheels too.
# - requirements-test.lock, `make venv`'s: the test extra, constrained to requirements.lock
#   so every package the image ships is tested at the version it ships.
# - requirements-synapse.lock, the test homeserver's own virtualenv.
LOCK_FLAGS = --generate-hashes --python-platform linux --python-version 3.11 --custom-compile-command "make lock" -q
lock: venv
	$(BIN)/pip install -q uv
	echo "setuptools>=69" | $(BIN)/uv pip compile pyproject.toml - --extra all $(LOCK_FLAGS) -o requirements.lock
	echo "setuptools>=69" | $(BIN)/uv pip compile pyproject.toml - --extra test -c requirements.lock $(LOCK_FLAGS) \
		-o requirements-test.lock
	echo "matrix-synapse>=1.100" | $(BIN)/uv pip compile - $(LOCK_FLAGS) -o requirements-synapse.lock

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .demo
