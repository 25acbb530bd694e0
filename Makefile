# `make demo`: create .venv, install everything (pinned), run the main job on a small default.
# `make test`: the whole test suite. Both are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= disable

.PHONY: setup demo test clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m suites check suite=smoke

test: setup
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
