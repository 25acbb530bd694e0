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

# The smoke suite (Hopper-v4, cartpole-balance, myo-reach) x 1 seed, small widths, 6k frames,
# through the local launcher, then the analysis report on its results (a few minutes, 2 cores).
DEMO := exp=demo root=runs frames=6000 warmup_steps=500 actor.width=32 critic.width=64 \
	critic.depth=1 eval_every=2000 metrics_every=1000 log_every=1000 eval_episodes=5

demo: setup
	$(BIN)/python -m suites check suite=smoke
	$(BIN)/python -m harness.launch suite=smoke seeds=1 workers=2 $(DEMO)
	$(BIN)/python -m analysis.make_figures results=runs/demo out=runs/demo-report frames=6000

test: setup
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
