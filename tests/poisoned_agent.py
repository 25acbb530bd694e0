"""SimbaV2 whose run with seed 1 turns non-finite after 40 updates (the others train normally):
how the multi-seed tests make one seed of a K-batch fail. Launched by import path
(`agent=tests.poisoned_agent:PoisonedSimbaV2`)."""

from __future__ import annotations

import flax.struct as struct
import jax
import jax.numpy as jnp

from agents import simbav2
from suites import derive_seed

POISONED_RUN_SEED = 1
AFTER_UPDATES = 40


class State(struct.PyTreeNode):
    inner: simbav2.SimbaV2
    poison: jax.Array     # bool scalar: this run is the poisoned one


class PoisonedSimbaV2:
    Config = simbav2.Config

    @staticmethod
    def init(config, spec, seed: int) -> State:
        # the runner passes the agent seed derived from the run seed
        return State(simbav2.init(config, spec, seed),
                     jnp.asarray(seed == derive_seed(POISONED_RUN_SEED, "agent")))

    @staticmethod
    def act(agent: State, obs, key, deterministic: bool = False):
        return simbav2.act(agent.inner, obs, key, deterministic=deterministic)

    @staticmethod
    def update(agent: State, block: dict):
        inner, metrics = simbav2.update(agent.inner, block)
        bad = agent.poison & (inner.step > AFTER_UPDATES)
        metrics = dict(metrics, **{"critic/loss": jnp.where(bad, jnp.nan, metrics["critic/loss"]),
                                   "health/finite": metrics["health/finite"] & ~bad})
        return agent.replace(inner=inner), metrics

    @staticmethod
    def networks(agent: State) -> dict:
        return simbav2.networks(agent.inner)

    normalizers = staticmethod(simbav2.normalizers)
    critic_heads = staticmethod(simbav2.critic_heads)

    @staticmethod
    def stability_metrics(agent: State, batch: dict) -> dict:
        return simbav2.stability_metrics(agent.inner, batch)
