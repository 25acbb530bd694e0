"""A complete agent that lives outside the `agents` package: DDPG with small MLPs
(Lillicrap et al. 2016), written against the contract in agents/base.py.

Launch it by path: `python -m harness.launch task=cartpole-balance agent=tiny_agent:TinyDDPG`
with this file's folder on PYTHONPATH. docs/adding-a-baseline.md walks through it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import flax.linen as nn
import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from agents.base import AgentSpec, BaseConfig, setting
from agents.fused import scan_updates
from agents.targets import polyak
from agents.train_state import TrainState, apply_gradients


@dataclass(frozen=True)
class DDPGConfig(BaseConfig):
    """TinyDDPG settings (batch_size and the update rate come from BaseConfig)."""

    width: int = setting(64, low=1)                  # hidden units of actor and critic (2 layers each)
    lr: float = setting(1e-3, low=0, low_inclusive=False)  # Adam LR of actor and critic
    tau: float = setting(0.005, low=0, low_inclusive=False, high=1)  # Polyak rate of both target networks
    noise: float = setting(0.1, low=0)               # std of the Gaussian exploration noise on actions

    def size(self) -> dict[str, int]:
        return {"width": self.width, "depth": 2}


class MLP(nn.Module):
    width: int
    out: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width, name="encoder_0")(x))
        x = nn.relu(nn.Dense(self.width, name="encoder_1")(x))
        return nn.Dense(self.out, name="predictor")(x)


class State(struct.PyTreeNode):
    actor: TrainState
    critic: TrainState
    target_actor: dict
    target_critic: dict
    config: DDPGConfig = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)


@functools.lru_cache(maxsize=None)
def _nets(config: DDPGConfig, spec: AgentSpec):
    return MLP(config.width, spec.act_dim), MLP(config.width, 1), optax.adam(config.lr)


def _q(critic, params, obs, action):
    return critic.apply({"params": params}, jnp.concatenate([obs, action], -1))[..., 0]


def _step(state: State, batch: dict):
    actor, critic, tx = _nets(state.config, state.spec)
    next_a = jnp.tanh(actor.apply({"params": state.target_actor}, batch["next_obs"]))
    target = batch["reward"] + state.spec.discount * (1 - batch["terminated"]) * _q(
        critic, state.target_critic, batch["next_obs"], next_a)
    c_loss, c_grad = jax.value_and_grad(lambda p: jnp.mean(
        (_q(critic, p, batch["obs"], batch["action"]) - jax.lax.stop_gradient(target)) ** 2))(
        state.critic.params)
    new_critic = apply_gradients(state.critic, c_grad, tx)
    a_loss, a_grad = jax.value_and_grad(lambda p: -jnp.mean(_q(
        critic, new_critic.params, batch["obs"], jnp.tanh(actor.apply({"params": p},
                                                                      batch["obs"])))))(
        state.actor.params)
    new_actor = apply_gradients(state.actor, a_grad, tx)
    tau = state.config.tau
    return state.replace(actor=new_actor, critic=new_critic,
                         target_actor=polyak(state.target_actor, new_actor.params, tau),
                         target_critic=polyak(state.target_critic, new_critic.params, tau)), {
        "critic/loss": c_loss, "actor/loss": a_loss}


class TinyDDPG:
    """The agent: the contract's functions as static methods of one class."""

    Config = DDPGConfig

    @staticmethod
    def init(config: DDPGConfig, spec: AgentSpec, seed: int) -> State:
        actor, critic, tx = _nets(config, spec)
        ka, kc = jax.random.split(jax.random.PRNGKey(seed))
        a = actor.init(ka, jnp.zeros((1, spec.obs_dim)))["params"]
        c = critic.init(kc, jnp.zeros((1, spec.obs_dim + spec.act_dim)))["params"]
        # targets start as copies: `update` donates its input, and a buffer shared by two
        # leaves cannot be donated twice
        copy = functools.partial(jax.tree.map, jnp.copy)
        return State(TrainState.create(a, tx), TrainState.create(c, tx), copy(a), copy(c),
                     config, spec)

    @staticmethod
    @functools.partial(jax.jit, static_argnames="deterministic")
    def act(state: State, obs, key, deterministic: bool = False):
        actor, _, _ = _nets(state.config, state.spec)
        a = jnp.tanh(actor.apply({"params": state.actor.params}, obs))
        if deterministic:
            return a
        return jnp.clip(a + state.config.noise * jax.random.normal(key, a.shape), -1.0, 1.0)

    @staticmethod
    @functools.partial(jax.jit, donate_argnums=0)
    def update(state: State, block: dict):
        return scan_updates(_step, state, block, ("critic/loss", "actor/loss"))

    @staticmethod
    def networks(state: State) -> dict:
        return {"actor": state.actor.params, "critic": state.critic.params}
