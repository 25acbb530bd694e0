"""SAC (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"): MLP actor and
twin MLP critics with ReLU, MSE TD loss, clipped double-Q, Polyak target, learned temperature.

No observation normalisation and no reward scaling (the optional `normalizers` is absent, so
the runner feeds raw observations and rewards). One gradient update per environment frame by
default: one per environment step on Gym MuJoCo (action repeat 1), as in the paper.

Update order per gradient step: critic (target from the current actor and temperature and
the target critics) -> actor (on the new critics) -> temperature -> Polyak target.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import flax.linen as nn
import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from agents import temperature as temp
from agents.base import AgentSpec, BaseConfig, setting
from agents.fused import scan_updates
from agents.networks import Ensemble
from agents.policies import sample_tanh_gaussian
from agents.stability import actor_critic_metrics
from agents.targets import cdq_heads, min_scalar, polyak
from agents.train_state import TrainState, apply_gradients


@dataclass(frozen=True)
class NetworkConfig:
    width: int = setting(256, low=1, high=65536)   # hidden units per layer
    depth: int = setting(2, low=1, high=64)     # hidden layers


@dataclass(frozen=True)
class Config(BaseConfig):
    """SAC settings; defaults from Haarnoja et al. 2018 (Table 1 of arXiv:1812.05905)."""

    actor: NetworkConfig = field(default=NetworkConfig(256, 2))   # actor MLP: 2 x 256 ReLU (paper)
    critic: NetworkConfig = field(default=NetworkConfig(256, 2))  # each critic MLP: 2 x 256 ReLU (paper)
    lr: float = setting(3e-4, low=0, low_inclusive=False)  # Adam LR of actor, critics and temperature (paper)
    tau: float = setting(0.005, low=0, low_inclusive=False, high=1)  # Polyak rate of the target critics, every update (paper)
    temperature_init: float = setting(1.0, low=0, low_inclusive=False)  # initial temperature alpha (the authors' softlearning default)
    target_entropy_scale: float = setting(1.0, low=-10, high=10)  # target entropy = -scale * |A|; the paper's -|A|
    cdq: str = setting("on", choices=("on", "auto", "off"))  # clipped double-Q over twin critics: on (paper) | auto (= the domain is episodic) | off
    log_std_min: float = setting(-20.0, low=-100, high=100)  # lower clip of the actor's log std (softlearning)
    log_std_max: float = setting(2.0, low=-100, high=100)  # upper clip of the actor's log std (softlearning)

    ORDERED = (("log_std_min", "log_std_max"),)

    def num_heads(self, spec: AgentSpec) -> int:
        return cdq_heads(self.cdq, spec.episodic)


_INIT = nn.initializers.xavier_uniform()   # softlearning's (Keras) default


class MLPBody(nn.Module):
    """ReLU MLP; parameters grouped as `encoder` (hidden layers) and `predictor` (the output
    layer) for the stability metrics. Returns (output (..., out_dim), features)."""

    width: int
    depth: int
    out_dim: int

    @nn.compact
    def __call__(self, x):
        feats = {}
        for i in range(self.depth):
            x = nn.relu(nn.Dense(self.width, kernel_init=_INIT, name=f"encoder_{i}")(x))
            feats[f"layer_{i}"] = x
        feats["head_hidden"] = x
        return nn.Dense(self.out_dim, kernel_init=_INIT, name="predictor")(x), feats


class SAC(struct.PyTreeNode):
    actor: TrainState
    critic: TrainState       # params {"head_0": ..., "head_1": ...}
    target: dict             # target critic params
    temperature: TrainState  # params: log alpha
    step: jax.Array
    key: jax.Array
    config: Config = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)


class _Static:
    def __init__(self, c: Config, spec: AgentSpec):
        self.actor = MLPBody(c.actor.width, c.actor.depth, 2 * spec.act_dim)
        self.critic = Ensemble(MLPBody(c.critic.width, c.critic.depth, 1), c.num_heads(spec))
        self.tx = optax.adam(c.lr)
        self.target_entropy = -c.target_entropy_scale * spec.act_dim


@functools.lru_cache(maxsize=64)
def _static(config: Config, spec: AgentSpec) -> _Static:
    return _Static(config, spec)


def init(config: Config, spec: AgentSpec, seed: int) -> SAC:
    return _init(config, spec, jax.random.PRNGKey(seed))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(config: Config, spec: AgentSpec, key: jax.Array) -> SAC:
    s = _static(config, spec)
    key, k_actor, k_critic = jax.random.split(key, 3)
    obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
    act_ = jnp.zeros((1, spec.act_dim), jnp.float32)
    actor = s.actor.init(k_actor, obs)["params"]
    critic = s.critic.init(k_critic, jnp.concatenate([obs, act_], -1))["params"]
    return SAC(actor=TrainState.create(actor, s.tx), critic=TrainState.create(critic, s.tx),
               target=jax.tree.map(jnp.copy, critic),
               temperature=temp.init(config.temperature_init, s.tx),
               step=jnp.zeros((), jnp.int32), key=key, config=config, spec=spec)


def networks(agent: SAC) -> dict:
    return {"actor": agent.actor.params, "critic": agent.critic.params}


def critic_heads(config: Config, spec: AgentSpec) -> int:
    return config.num_heads(spec)


def _policy(s: _Static, c: Config, params, obs):
    out, feats = s.actor.apply({"params": params}, obs)
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, c.log_std_min, c.log_std_max), feats


@functools.partial(jax.jit, static_argnames="deterministic")
def act(agent: SAC, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """obs (B, obs_dim) raw -> actions (B, act_dim) in [-1, 1]; deterministic = tanh(mean)."""
    mean, log_std, _ = _policy(_static(agent.config, agent.spec), agent.config,
                               agent.actor.params, obs)
    if deterministic:
        return jnp.tanh(mean)
    return sample_tanh_gaussian(key, mean, log_std)[0]


def _q(s, params, obs, action):
    """Q (H, B) of every critic head, and the features."""
    q, feats = s.critic.apply({"params": params}, jnp.concatenate([obs, action], axis=-1))
    return q[..., 0], feats


def _critic_target(s, agent: SAC, batch, key):
    """r + gamma (1 - terminated) (min_h Q_target,h(s', a') - alpha log pi(a'|s')), (B,)."""
    mean, log_std, _ = _policy(s, agent.config, agent.actor.params, batch["next_obs"])
    next_action, next_log_prob = sample_tanh_gaussian(key, mean, log_std)
    next_q, _ = _q(s, agent.target, batch["next_obs"], next_action)
    v = min_scalar(next_q) - temp.value(agent.temperature) * next_log_prob
    return jax.lax.stop_gradient(
        batch["reward"] + agent.spec.discount * (1.0 - batch["terminated"]) * v)


def _critic_loss(s, params, batch, target):
    """Sum over heads of mean squared TD error. Aux: (Q (H, B), features)."""
    q, feats = _q(s, params, batch["obs"], batch["action"])
    return jnp.sum(jnp.mean(jnp.square(q - target[None]), axis=-1)), (q, feats)


def _actor_loss(s, agent: SAC, params, critic_params, obs, key):
    """mean(alpha log pi(a|s) - min_h Q_h(s, a)), a ~ pi reparameterised."""
    mean, log_std, feats = _policy(s, agent.config, params, obs)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    q, _ = _q(s, critic_params, obs, action)
    alpha = temp.value(agent.temperature)
    return jnp.mean(alpha * log_prob - min_scalar(q)), (log_prob, feats)


def _gradient_step(agent: SAC, batch: dict) -> tuple[SAC, dict]:
    s = _static(agent.config, agent.spec)
    key, k_next, k_actor = jax.random.split(agent.key, 3)
    target = _critic_target(s, agent, batch, k_next)
    (c_loss, (q, _)), c_grads = jax.value_and_grad(_critic_loss, argnums=1, has_aux=True)(
        s, agent.critic.params, batch, target)
    critic = apply_gradients(agent.critic, c_grads, s.tx)
    (a_loss, (log_prob, _)), a_grads = jax.value_and_grad(_actor_loss, argnums=2, has_aux=True)(
        s, agent, agent.actor.params, critic.params, batch["obs"], k_actor)
    actor = apply_gradients(agent.actor, a_grads, s.tx)
    entropy = -jnp.mean(log_prob)
    temperature, t_loss = temp.step(agent.temperature, entropy, s.target_entropy, s.tx)
    metrics = {"critic/loss": c_loss, "critic/q_mean": jnp.mean(q),
               "critic/target_q_mean": jnp.mean(target),
               "critic/reward_mean": jnp.mean(batch["reward"]),
               "actor/loss": a_loss, "actor/entropy": entropy,
               "temperature/loss": t_loss, "temperature/value": temp.value(temperature)}
    return agent.replace(actor=actor, critic=critic, temperature=temperature,
                         target=polyak(agent.target, critic.params, agent.config.tau),
                         step=agent.step + 1, key=key), metrics


@functools.partial(jax.jit, donate_argnums=0)
def update(agent: SAC, block: dict) -> tuple[SAC, dict]:
    """k gradient updates on a (k, batch, ...) block in one lax.scan (agents/base.py)."""
    return scan_updates(_gradient_step, agent, block,
                        ("actor/loss", "critic/loss", "temperature/loss"))


@jax.jit
def stability_metrics(agent: SAC, batch: dict) -> dict:
    """Norms, gradient norms and effective LR of actor and critics on one batch, and feature
    norms (agents/stability.py naming)."""
    s = _static(agent.config, agent.spec)
    k_next, k_actor = jax.random.split(jax.random.fold_in(agent.key, 7))
    target = _critic_target(s, agent, batch, k_next)
    (_, (_, c_feats)), c_grads = jax.value_and_grad(_critic_loss, argnums=1, has_aux=True)(
        s, agent.critic.params, batch, target)
    (_, (_, a_feats)), a_grads = jax.value_and_grad(_actor_loss, argnums=2, has_aux=True)(
        s, agent, agent.actor.params, agent.critic.params, batch["obs"], k_actor)
    return actor_critic_metrics(agent.actor.params, a_grads, a_feats,
                                agent.critic.params, c_grads, c_feats)

