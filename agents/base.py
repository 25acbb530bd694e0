"""What every agent gets from the task, and the registry of agents (data, not if/elif).

An agent module exposes:
  Config                                   frozen dataclass, one docstring line per field
  init(config, spec, seed) -> state        the whole learner state as one pytree
  act(state, obs, key, deterministic)      obs (B, obs_dim) normalised -> actions (B, act_dim)
  update(state, block) -> (state, metrics) k gradient updates on a (k, batch, ...) block
  stability_metrics(state, batch) -> dict  norm / ELR / feature metrics on one batch
  normalizers(config, spec) -> (obs, reward) host-side statistics objects (or None each)
Adding a baseline = one new module + one line in AGENTS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

AGENTS: dict[str, str] = {
    "simbav2": "agents.simbav2",
}


@dataclass(frozen=True)
class AgentSpec:
    """Task facts an agent is built for."""

    obs_dim: int          # observation dimension
    act_dim: int          # action dimension (actions in [-1, 1])
    discount: float       # gamma
    episodic: bool        # the domain has real terminals (clipped double-Q switches on this)
    total_updates: int    # gradient updates planned for the run (length of the LR decay)


def get_agent(name: str) -> ModuleType:
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; valid: {', '.join(AGENTS)}")
    return importlib.import_module(AGENTS[name])
