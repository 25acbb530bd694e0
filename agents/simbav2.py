"""SimbaV2: SAC with hyperspherical normalisation, a categorical critic and reward scaling.

Follows docs/simbav2.md (where paper and released code differ, the defaults reproduce the
code behind the published numbers; switches select the release behaviour). The learner state
is one immutable pytree; `init`, `act` and `update` are pure functions, and one `update` call
runs k gradient updates as a `lax.scan` over a (k, batch, ...) block inside one jit.

Update order per gradient step: actor -> temperature -> critic (target from the *new* actor and
*new* temperature) -> Polyak target. Kernels are re-projected onto the sphere after every actor
and critic step, never the target.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from agents import distributional as dist
from agents import temperature as temp
from agents.base import AgentSpec, BaseConfig, setting
from agents.fused import scan_updates
from agents.layers import project_kernels
from agents.normalization import ObservationNormalizer, RewardScaler
from agents.networks import CategoricalCritic, SimbaV2Actor
from agents.policies import sample_tanh_gaussian
from agents.stability import actor_critic_metrics
from agents.targets import cdq_heads, min_categorical, polyak
from agents.train_state import TrainState, apply_gradients


@dataclass(frozen=True)
class NetworkConfig:
    width: int = setting(512, low=1, high=65536)   # hidden width d of the embedder, blocks and head
    depth: int = setting(2, low=1, high=64)     # number of LERP residual blocks L


@dataclass(frozen=True)
class Config(BaseConfig):
    """SimbaV2 settings; the defaults are the paper's (docs/agents.md). batch_size (256) and
    the update rate (default 1 update per frame = the paper's UTD 2) come from BaseConfig."""

    actor: NetworkConfig = field(default=NetworkConfig(width=128, depth=1))  # actor body
    critic: NetworkConfig = field(default=NetworkConfig(width=512, depth=2))  # critic body
    num_atoms: int = setting(101, low=2, high=10_000)  # categorical critic atoms on [-g_max, g_max]
    g_max: float = setting(5.0, low=0, low_inclusive=False)  # critic support bound and reward-scaling bound on |G|
    c_shift: float = setting(3.0, low=0, low_inclusive=False)  # constant appended to the input before the l2 projection
    scaler_init: str = setting("paper", choices=("paper", "release"))  # paper: embedder 1/1, block 1/sqrt d; release: sqrt(2/d), sqrt(2/d)/2
    g_reset: str = setting("terminated", choices=("terminated", "done"))  # reset the running return G on: terminated (paper) | done (release)
    lr_init: float = setting(1e-4, low=0, low_inclusive=False)  # Adam LR at the first update (actor, critic, temperature)
    lr_end: float = setting(5e-5, low=0)  # Adam LR after the planned number of updates (linear decay)
    tau: float = setting(0.005, low=0, low_inclusive=False, high=1)  # Polyak rate of the target critic, every update
    temperature_init: float = setting(0.01, low=0, low_inclusive=False)  # initial SAC temperature alpha
    target_entropy_scale: float = setting(0.5, low=-10, high=10)  # target entropy = -scale * |A|
    cdq: str = setting("auto", choices=("auto", "on", "off"))  # clipped double-Q: auto (= the domain is episodic) | on | off
    log_std_min: float = setting(-10.0, low=-100, high=100)  # lower bound of the actor's log std
    log_std_max: float = setting(2.0, low=-100, high=100)  # upper bound of the actor's log std

    ORDERED = (("log_std_min", "log_std_max"),)

    def num_heads(self, spec: AgentSpec) -> int:
        return cdq_heads(self.cdq, spec.episodic)


class SimbaV2(struct.PyTreeNode):
    """The whole learner state (everything but the host-side float64 normalisers)."""

    actor: TrainState
    critic: TrainState
    target: dict             # target critic params (EMA, not re-projected)
    temperature: TrainState  # params: log alpha (scalar)
    step: jax.Array          # gradient updates done
    key: jax.Array
    config: Config = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)


class _Static:
    """Modules, optimisers and constants derived from (config, spec); cached so every state
    built for the same setting shares them (and jit caches stay warm)."""

    def __init__(self, config: Config, spec: AgentSpec):
        c = config
        self.actor = SimbaV2Actor(spec.act_dim, c.actor.width, c.actor.depth, c.c_shift,
                                  c.scaler_init, c.log_std_min, c.log_std_max)
        self.critic = CategoricalCritic(c.num_heads(spec), c.critic.width, c.critic.depth,
                                         c.num_atoms, c.c_shift, c.scaler_init)
        self.atoms = dist.support(c.num_atoms, -c.g_max, c.g_max)
        schedule = optax.linear_schedule(c.lr_init, c.lr_end, max(int(spec.total_updates), 1))
        self.tx = optax.adam(schedule)
        self.target_entropy = -c.target_entropy_scale * spec.act_dim


@functools.lru_cache(maxsize=64)
def _static(config: Config, spec: AgentSpec) -> _Static:
    return _Static(config, spec)


def init(config: Config, spec: AgentSpec, seed: int) -> SimbaV2:
    """A fresh learner: projected actor and critic, target = critic, log alpha = log(init)."""
    return _init(config, spec, jax.random.PRNGKey(seed))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(config: Config, spec: AgentSpec, key: jax.Array) -> SimbaV2:
    s = _static(config, spec)
    key, k_actor, k_critic = jax.random.split(key, 3)
    obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
    act = jnp.zeros((1, spec.act_dim), jnp.float32)
    actor = project_kernels(s.actor.init(k_actor, obs)["params"])
    critic = project_kernels(s.critic.init(k_critic, obs, act)["params"])
    return SimbaV2(
        actor=TrainState.create(actor, s.tx),
        critic=TrainState.create(critic, s.tx),
        target=jax.tree.map(jnp.copy, critic),
        temperature=temp.init(config.temperature_init, s.tx),
        step=jnp.zeros((), jnp.int32), key=key, config=config, spec=spec)


def networks(agent: SimbaV2) -> dict:
    """The trainable parameter trees (the critic holds every head)."""
    return {"actor": agent.actor.params, "critic": agent.critic.params}


def critic_heads(config: Config, spec: AgentSpec) -> int:
    return config.num_heads(spec)


def normalizers(config: Config, spec: AgentSpec):
    """Host-side float64 statistics this agent trains with: (observations, rewards)."""
    return (ObservationNormalizer((spec.obs_dim,)),
            RewardScaler(spec.discount, config.g_max, config.g_reset))


def _policy(agent: SimbaV2, obs: jax.Array, params=None):
    s = _static(agent.config, agent.spec)
    return s.actor.apply({"params": agent.actor.params if params is None else params}, obs)


@functools.partial(jax.jit, static_argnames="deterministic")
def act(agent: SimbaV2, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """obs (B, obs_dim), normalised -> actions (B, act_dim) in [-1, 1]; deterministic = tanh(mean)."""
    mean, log_std, _ = _policy(agent, obs)
    if deterministic:
        return jnp.tanh(mean)
    return sample_tanh_gaussian(key, mean, log_std)[0]


def _actor_loss(s: _Static, agent: SimbaV2, params, obs, key, alpha):
    """mean(alpha log pi(a|s) - min_h Q_h(s, a)), a ~ pi reparameterised, Q from the online
    critic (gradients reach the actor only through a). Aux: (log pi, actor features)."""
    mean, log_std, feats = s.actor.apply({"params": params}, obs)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    logits, _ = s.critic.apply({"params": agent.critic.params}, obs, action)
    q = dist.expected_value(jax.nn.softmax(logits, axis=-1), s.atoms)           # (H, B)
    return jnp.mean(alpha * log_prob - jnp.min(q, axis=0)), (log_prob, feats)


def _critic_target(s: _Static, agent: SimbaV2, actor_params, batch, alpha, key):
    """C51 projection of r + gamma (1 - term) (z - alpha log pi(a'|s')), a' from `actor_params`,
    the distribution from the target critic (per-sample min head with CDQ). (B, N)."""
    c = agent.config
    mean, log_std, _ = s.actor.apply({"params": actor_params}, batch["next_obs"])
    next_action, next_log_prob = sample_tanh_gaussian(key, mean, log_std)
    next_logits, _ = s.critic.apply({"params": agent.target}, batch["next_obs"], next_action)
    next_probs = min_categorical(jax.nn.softmax(next_logits, axis=-1), s.atoms)  # (B, N)
    bootstrap = agent.spec.discount * (1.0 - batch["terminated"])
    target_atoms = batch["reward"][:, None] + bootstrap[:, None] * (
        s.atoms[None, :] - alpha * next_log_prob[:, None])
    return jax.lax.stop_gradient(dist.project(target_atoms, next_probs, -c.g_max, c.g_max))


def _critic_loss(s: _Static, params, batch, target):
    logits, feats = s.critic.apply({"params": params}, batch["obs"], batch["action"])
    return dist.cross_entropy(logits, target), (logits, feats)


def _gradient_step(agent: SimbaV2, batch: dict) -> tuple[SimbaV2, dict]:
    """One SimbaV2 update on one batch: obs/next_obs (B, O) normalised, action (B, A),
    reward (B,) scaled, terminated (B,) in {0, 1}."""
    s = _static(agent.config, agent.spec)
    key, k_actor, k_next = jax.random.split(agent.key, 3)

    # 1. actor, with the current temperature
    alpha = temp.value(agent.temperature)
    (a_loss, (log_prob, _)), a_grads = jax.value_and_grad(_actor_loss, argnums=2, has_aux=True)(
        s, agent, agent.actor.params, batch["obs"], k_actor, alpha)
    actor = apply_gradients(agent.actor, a_grads, s.tx, post=project_kernels)
    entropy = -jnp.mean(log_prob)

    # 2. temperature, on the actor step's (constant) entropy
    temperature, t_loss = temp.step(agent.temperature, entropy, s.target_entropy, s.tx)
    alpha_new = temp.value(temperature)

    # 3. critic, towards the target built from the *new* actor and temperature
    target = _critic_target(s, agent, actor.params, batch, alpha_new, k_next)
    (c_loss, (logits, _)), c_grads = jax.value_and_grad(_critic_loss, argnums=1, has_aux=True)(
        s, agent.critic.params, batch, target)
    critic = apply_gradients(agent.critic, c_grads, s.tx, post=project_kernels)

    # 4. Polyak target (kept off the sphere, as the paper's code)
    target_params = polyak(agent.target, critic.params, agent.config.tau)

    q = dist.expected_value(jax.nn.softmax(logits, axis=-1), s.atoms)
    metrics = {
        "actor/loss": a_loss, "actor/entropy": entropy,
        "temperature/loss": t_loss, "temperature/value": alpha_new,
        "critic/loss": c_loss, "critic/q_mean": jnp.mean(q),
        "critic/target_q_mean": jnp.mean(target @ s.atoms),
        "critic/reward_mean": jnp.mean(batch["reward"]),
    }
    new = agent.replace(actor=actor, critic=critic, target=target_params,
                        temperature=temperature, step=agent.step + 1, key=key)
    return new, metrics


@functools.partial(jax.jit, donate_argnums=0)
def update(agent: SimbaV2, block: dict) -> tuple[SimbaV2, dict]:
    """k gradient updates, one per leading index of `block` (k, batch, ...), in one lax.scan.
    Returns the new state and the metrics averaged over the k updates (device scalars, plus
    `health/finite`, false when any loss was NaN/Inf). The input state is donated."""
    return scan_updates(_gradient_step, agent, block,
                        ("actor/loss", "critic/loss", "temperature/loss"))


@jax.jit
def stability_metrics(agent: SimbaV2, batch: dict) -> dict:
    """§5 metrics of actor and critic on one batch: per group (encoder, predictor, total)
    parameter norm, raw gradient norm (of the losses at the current parameters) and effective
    LR, and feature norms of every block and of the head's hidden vector."""
    s = _static(agent.config, agent.spec)
    k_actor, k_next = jax.random.split(jax.random.fold_in(agent.key, 7))
    alpha = temp.value(agent.temperature)
    target = _critic_target(s, agent, agent.actor.params, batch, alpha, k_next)
    (_, (_, c_feats)), c_grads = jax.value_and_grad(_critic_loss, argnums=1, has_aux=True)(
        s, agent.critic.params, batch, target)
    (_, (_, a_feats)), a_grads = jax.value_and_grad(_actor_loss, argnums=2, has_aux=True)(
        s, agent, agent.actor.params, batch["obs"], k_actor, alpha)
    return actor_critic_metrics(agent.actor.params, a_grads, a_feats,
                                agent.critic.params, c_grads, c_feats)
