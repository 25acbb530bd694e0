"""Simba (v1): SAC with the SimBa network (running observation normalisation, a linear
embedding, pre-LayerNorm residual MLP blocks and a final LayerNorm), trained with AdamW.

Sources: Lee et al. 2024, "SimBa: Simplicity Bias for Scaling Up Parameters in Deep
Reinforcement Learning" (arXiv:2410.09754) for the architecture, and the Simba baseline config
of the SimbaV2 authors' repository (dojeon-ai/SimbaV2, `configs/agent/simba.yaml`) for the
hyperparameters. The original Simba repository (SonyResearch/simba,
`configs/agent/sac_simba.yaml`) leaves the temperature without weight decay, where the SimbaV2
repository's config decays it too (`temperature_weight_decay` chooses; default: SimbaV2's).
The discount is the task's (`spec.discount`).

Network (actor and critic share the body): x -> Dense(d) (orthogonal init) -> L blocks
h <- h + Dense(d)(relu(Dense(4d)(LayerNorm(h)))) (He-normal init) -> LayerNorm -> head.
Actor head: Dense to the mean and Dense to the log std (orthogonal init), the log std squashed
into [log_std_min, log_std_max] with tanh; the policy is a tanh-Gaussian. Critic: the body on
[obs; action] and a Dense(1) head (orthogonal init), MSE TD loss summed over the ensemble.
Parameter trees: `encoder` (embedding, blocks, final LayerNorm) and `predictor*` (the heads).

Running observation normalisation (`normalizers`); no reward scaling. The learner state is one
immutable pytree; `update` runs k gradient updates as a `lax.scan` over a (k, batch, ...) block
inside one jit.

Update order per gradient step (as SimbaV2): actor (current temperature, online critic, min
over heads) -> temperature -> critic (target from the *new* actor and *new* temperature and the
target critic, min over heads) -> Polyak target. No weight projection.
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
from agents.normalization import ObservationNormalizer
from agents.policies import sample_tanh_gaussian, squash_log_std
from agents.stability import actor_critic_metrics
from agents.targets import cdq_heads, min_scalar, polyak
from agents.train_state import TrainState, apply_gradients


@dataclass(frozen=True)
class NetworkConfig:
    width: int = setting(512, low=1, high=65536)   # hidden width d of the embedding and the residual stream (blocks expand to 4d)
    depth: int = setting(2, low=1, high=64)     # number of pre-LayerNorm residual blocks L


@dataclass(frozen=True)
class Config(BaseConfig):
    """Simba settings; defaults from the SimbaV2 repository's configs/agent/simba.yaml (= the
    SimBa paper's). batch_size (256) and the update rate (default 1 update per frame = the
    paper's UTD 2, as SimbaV2) come from BaseConfig."""

    actor: NetworkConfig = field(default=NetworkConfig(width=128, depth=1))  # actor body: width 128, 1 block (simba.yaml, SimBa paper)
    critic: NetworkConfig = field(default=NetworkConfig(width=512, depth=2))  # each critic's body: width 512, 2 blocks (simba.yaml, SimBa paper)
    lr: float = setting(1e-4, low=0, low_inclusive=False)  # constant AdamW LR of actor, critic and temperature (simba.yaml)
    weight_decay: float = setting(1e-2, low=0)  # AdamW weight decay of actor and critic, on every parameter (simba.yaml)
    temperature_weight_decay: str = setting("on", choices=("on", "off"))  # temperature's AdamW weight decay: on = weight_decay (SimbaV2 repo simba.yaml) | off = 0 (original Simba repo sac_simba.yaml)
    tau: float = setting(0.005, low=0, low_inclusive=False, high=1)  # Polyak rate of the target critic, every update (simba.yaml)
    temperature_init: float = setting(0.01, low=0, low_inclusive=False)  # initial SAC temperature alpha (simba.yaml)
    target_entropy_scale: float = setting(0.5, low=-10, high=10)  # target entropy = -scale * |A| (simba.yaml: coefficient -0.5)
    cdq: str = setting("auto", choices=("auto", "on", "off"))  # clipped double-Q: auto (= the domain is episodic; simba.yaml) | on | off
    log_std_min: float = setting(-10.0, low=-100, high=100)  # lower bound of the actor's log std (Simba's NormalTanhPolicy)
    log_std_max: float = setting(2.0, low=-100, high=100)  # upper bound of the actor's log std (Simba's NormalTanhPolicy)

    ORDERED = (("log_std_min", "log_std_max"),)

    def num_heads(self, spec: AgentSpec) -> int:
        return cdq_heads(self.cdq, spec.episodic)

    @property
    def temperature_decay(self) -> float:
        """The temperature optimiser's weight decay."""
        return self.weight_decay if self.temperature_weight_decay == "on" else 0.0


_ORTHOGONAL = nn.initializers.orthogonal(1.0)   # embedding and heads (Simba's orthogonal_init(1))
_HE_NORMAL = nn.initializers.he_normal()        # residual blocks' dense layers


class ResidualBlock(nn.Module):
    """h + Dense(d)(relu(Dense(4d)(LayerNorm(h)))): the pre-LN inverted bottleneck."""

    width: int
    expansion: int = 4

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        u = nn.LayerNorm(name="norm")(h)
        u = nn.relu(nn.Dense(self.expansion * self.width, kernel_init=_HE_NORMAL,
                             name="expand")(u))
        return h + nn.Dense(self.width, kernel_init=_HE_NORMAL, name="contract")(u)


class SimbaEncoder(nn.Module):
    """Dense(d) embedding, `depth` residual blocks, final LayerNorm. Returns (z, features):
    every block's output `block_i` and `head_hidden` (z, the final LayerNorm's output)."""

    width: int
    depth: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        h = nn.Dense(self.width, kernel_init=_ORTHOGONAL, name="embedder")(x)
        feats = {}
        for i in range(self.depth):
            h = ResidualBlock(self.width, name=f"block_{i}")(h)
            feats[f"block_{i}"] = h
        z = nn.LayerNorm(name="final_norm")(h)
        feats["head_hidden"] = z
        return z, feats


class SimbaActor(nn.Module):
    """Tanh-Gaussian policy body: (mean, log_std) of the pre-tanh Gaussian, each (..., act_dim),
    log_std squashed into (log_std_min, log_std_max), and the features."""

    act_dim: int
    width: int
    depth: int
    log_std_min: float = -10.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array):
        z, feats = SimbaEncoder(self.width, self.depth, name="encoder")(obs)
        mean = nn.Dense(self.act_dim, kernel_init=_ORTHOGONAL, name="predictor_mean")(z)
        raw = nn.Dense(self.act_dim, kernel_init=_ORTHOGONAL, name="predictor_std")(z)
        log_std = squash_log_std(raw, self.log_std_min, self.log_std_max)
        return mean, log_std, feats


class SimbaCritic(nn.Module):
    """One scalar critic: Q(s, a) (...,) from the body on [obs; action], and the features."""

    width: int
    depth: int

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array):
        x = jnp.concatenate([obs, action], axis=-1)  # actions are not normalised
        z, feats = SimbaEncoder(self.width, self.depth, name="encoder")(x)
        return nn.Dense(1, kernel_init=_ORTHOGONAL, name="predictor")(z)[..., 0], feats


class Simba(struct.PyTreeNode):
    """The whole learner state (everything but the host-side float64 observation normaliser)."""

    actor: TrainState
    critic: TrainState       # params {"head_0": ..., ["head_1": ...]}
    target: dict             # target critic params (EMA)
    temperature: TrainState  # params: log alpha (scalar)
    step: jax.Array          # gradient updates done
    key: jax.Array
    config: Config = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)


class _Static:
    """Modules, optimisers and constants derived from (config, spec); cached so every state
    built for the same setting shares them (and jit caches stay warm)."""

    def __init__(self, c: Config, spec: AgentSpec):
        self.actor = SimbaActor(spec.act_dim, c.actor.width, c.actor.depth, c.log_std_min,
                                c.log_std_max)
        self.critic = Ensemble(SimbaCritic(c.critic.width, c.critic.depth), c.num_heads(spec))
        self.tx = optax.adamw(c.lr, weight_decay=c.weight_decay)
        self.temp_tx = optax.adamw(c.lr, weight_decay=c.temperature_decay)
        self.target_entropy = -c.target_entropy_scale * spec.act_dim


@functools.lru_cache(maxsize=64)
def _static(config: Config, spec: AgentSpec) -> _Static:
    return _Static(config, spec)


def init(config: Config, spec: AgentSpec, seed: int) -> Simba:
    """A fresh learner: target = critic, log alpha = log(temperature_init)."""
    return _init(config, spec, jax.random.PRNGKey(seed))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(config: Config, spec: AgentSpec, key: jax.Array) -> Simba:
    s = _static(config, spec)
    key, k_actor, k_critic = jax.random.split(key, 3)
    obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
    act_ = jnp.zeros((1, spec.act_dim), jnp.float32)
    actor = s.actor.init(k_actor, obs)["params"]
    critic = s.critic.init(k_critic, obs, act_)["params"]
    return Simba(actor=TrainState.create(actor, s.tx), critic=TrainState.create(critic, s.tx),
                 target=jax.tree.map(jnp.copy, critic),
                 temperature=temp.init(config.temperature_init, s.temp_tx),
                 step=jnp.zeros((), jnp.int32), key=key, config=config, spec=spec)


def networks(agent: Simba) -> dict:
    """The trainable parameter trees (the critic holds every head)."""
    return {"actor": agent.actor.params, "critic": agent.critic.params}


def critic_heads(config: Config, spec: AgentSpec) -> int:
    return config.num_heads(spec)


def normalizers(config: Config, spec: AgentSpec):
    """Running observation normalisation (RSNorm); no reward scaling."""
    return ObservationNormalizer((spec.obs_dim,)), None


@functools.partial(jax.jit, static_argnames="deterministic")
def act(agent: Simba, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """obs (B, obs_dim), normalised -> actions (B, act_dim) in [-1, 1]; deterministic = tanh(mean)."""
    s = _static(agent.config, agent.spec)
    mean, log_std, _ = s.actor.apply({"params": agent.actor.params}, obs)
    if deterministic:
        return jnp.tanh(mean)
    return sample_tanh_gaussian(key, mean, log_std)[0]


def _actor_loss(s: _Static, agent: Simba, params, obs, key, alpha):
    """mean(alpha log pi(a|s) - min_h Q_h(s, a)), a ~ pi reparameterised, Q from the online
    critic (gradients reach the actor only through a). Aux: (log pi, actor features)."""
    mean, log_std, feats = s.actor.apply({"params": params}, obs)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    q, _ = s.critic.apply({"params": agent.critic.params}, obs, action)        # (H, B)
    return jnp.mean(alpha * log_prob - min_scalar(q)), (log_prob, feats)


def _critic_target(s: _Static, agent: Simba, actor_params, batch, alpha, key):
    """r + gamma (1 - terminated) (min_h Q_target,h(s', a') - alpha log pi(a'|s')), a' from
    `actor_params`, (B,)."""
    mean, log_std, _ = s.actor.apply({"params": actor_params}, batch["next_obs"])
    next_action, next_log_prob = sample_tanh_gaussian(key, mean, log_std)
    next_q, _ = s.critic.apply({"params": agent.target}, batch["next_obs"], next_action)
    v = min_scalar(next_q) - alpha * next_log_prob
    return jax.lax.stop_gradient(
        batch["reward"] + agent.spec.discount * (1.0 - batch["terminated"]) * v)


def _critic_loss(s: _Static, params, batch, target):
    """Sum over heads of the mean squared TD error. Aux: (Q (H, B), features)."""
    q, feats = s.critic.apply({"params": params}, batch["obs"], batch["action"])
    return jnp.sum(jnp.mean(jnp.square(q - target[None]), axis=-1)), (q, feats)


def _gradient_step(agent: Simba, batch: dict) -> tuple[Simba, dict]:
    """One Simba update on one batch: obs/next_obs (B, O) normalised, action (B, A),
    reward (B,), terminated (B,) in {0, 1}."""
    s = _static(agent.config, agent.spec)
    key, k_actor, k_next = jax.random.split(agent.key, 3)

    # 1. actor, with the current temperature and the online critic
    alpha = temp.value(agent.temperature)
    (a_loss, (log_prob, _)), a_grads = jax.value_and_grad(_actor_loss, argnums=2, has_aux=True)(
        s, agent, agent.actor.params, batch["obs"], k_actor, alpha)
    actor = apply_gradients(agent.actor, a_grads, s.tx)
    entropy = -jnp.mean(log_prob)

    # 2. temperature, on the actor step's (constant) entropy
    temperature, t_loss = temp.step(agent.temperature, entropy, s.target_entropy, s.temp_tx)
    alpha_new = temp.value(temperature)

    # 3. critic, towards the target built from the *new* actor and temperature
    target = _critic_target(s, agent, actor.params, batch, alpha_new, k_next)
    (c_loss, (q, _)), c_grads = jax.value_and_grad(_critic_loss, argnums=1, has_aux=True)(
        s, agent.critic.params, batch, target)
    critic = apply_gradients(agent.critic, c_grads, s.tx)

    # 4. Polyak target
    target_params = polyak(agent.target, critic.params, agent.config.tau)

    metrics = {"actor/loss": a_loss, "actor/entropy": entropy,
               "temperature/loss": t_loss, "temperature/value": alpha_new,
               "critic/loss": c_loss, "critic/q_mean": jnp.mean(q),
               "critic/target_q_mean": jnp.mean(target),
               "critic/reward_mean": jnp.mean(batch["reward"])}
    return agent.replace(actor=actor, critic=critic, target=target_params,
                         temperature=temperature, step=agent.step + 1, key=key), metrics


@functools.partial(jax.jit, donate_argnums=0)
def update(agent: Simba, block: dict) -> tuple[Simba, dict]:
    """k gradient updates, one per leading index of `block` (k, batch, ...), in one lax.scan.
    Returns the new state and the metrics averaged over the k updates (device scalars, plus
    `health/finite`). The input state is donated."""
    return scan_updates(_gradient_step, agent, block,
                        ("actor/loss", "critic/loss", "temperature/loss"))


@jax.jit
def stability_metrics(agent: Simba, batch: dict) -> dict:
    """Per group (encoder, predictor, total) parameter norm, raw gradient norm and effective
    LR of actor and critic on one batch, and feature norms of every block and of the final
    LayerNorm's output (agents/stability.py naming)."""
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
