"""CrossQ (Bhatt et al., ICLR 2024, "CrossQ: Batch Normalization in Deep Reinforcement Learning
for Greater Sample Efficiency and Simplicity", arXiv:1902.05605): SAC without target networks,
with Batch Renormalization (Ioffe 2017) in actor and critics.

Networks: the critic is concat(s, a) -> BRN -> [Dense -> ReLU -> BRN] x depth -> Dense(1), the
paper's wide variant (2 x 2048) by default, twin heads with clipped double-Q; the actor is
s -> BRN -> [Dense(256) -> ReLU -> BRN] x 2 -> mean / log std of a tanh-Gaussian. Each head
has its own parameters and its own batch statistics. BRN running statistics live in the
`batch_stats` collection, kept in the agent state (`actor_stats`, `critic_stats`) so that
checkpoints carry them. During a layer's first `brn_warmup_steps` training-mode passes BRN is
plain batch norm (r = 1, d = 0); every BRN layer counts its own passes, so critic layers count
critic updates and actor layers count actor updates (as in the authors' code).

Update order per gradient step:
  1. a' ~ pi(.|s') with the actor in eval mode (running statistics).
  2. Critic: ONE training-mode forward pass on the batch-wise concatenation of (s, a) and
     (s', a'), so the batch statistics (and the running statistics it updates) cover both;
     the output is split into Q(s, a) and stop_gradient(Q(s', a')), and the target is
     y = r + gamma (1 - terminated) (min_h Q_h(s', a') - alpha log pi(a'|s')). Loss: 0.5 x
     sum over heads of the mean squared TD error. Adam step; the pass's new running
     statistics replace the critic's.
  3. Every `policy_delay`-th update (steps 0, 3, 6, ... of the state's counter): the actor
     (training mode, its running statistics updated) on mean(alpha log pi(a|s) - min_h Q_h(s, a))
     with the new critics in eval mode (no statistics update), then the temperature towards
     the target entropy -|A|. Skipped updates repeat the latest actor/temperature metrics.
No Polyak average: there is no target network.

No observation normalisation and no reward scaling (no `normalizers`). One gradient update
per environment frame by default: CrossQ's UTD 1 (one update per environment step on Gym
MuJoCo, action repeat 1).
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
from agents.policies import sample_tanh_gaussian
from agents.stability import actor_critic_metrics
from agents.targets import cdq_heads, min_scalar
from agents.train_state import TrainState, apply_gradients


@dataclass(frozen=True)
class NetworkConfig:
    width: int = setting(256, low=1, high=65536)   # hidden units per layer
    depth: int = setting(2, low=1, high=64)     # hidden layers (Dense -> ReLU -> BRN blocks)


@dataclass(frozen=True)
class Config(BaseConfig):
    """CrossQ settings; defaults from Bhatt et al. 2024 (the paper's hyperparameter table) and
    the authors' JAX code (CrossQ in araffin/sbx)."""

    actor: NetworkConfig = field(default=NetworkConfig(256, 2))    # actor: 2 x 256 ReLU + BRN (paper)
    critic: NetworkConfig = field(default=NetworkConfig(2048, 2))  # each critic: 2 x 2048 ReLU + BRN (paper's wide critic)
    lr: float = setting(1e-3, low=0, low_inclusive=False)  # Adam LR of actor, critics and temperature (paper)
    adam_b1: float = setting(0.5, low=0, high=1, high_inclusive=False)  # Adam beta1 of every optimiser (paper; beta2 stays 0.999)
    policy_delay: int = setting(3, low=1, high=1000)  # critic updates per actor + temperature update (paper)
    temperature_init: float = setting(1.0, low=0, low_inclusive=False)  # initial temperature alpha (authors' code)
    target_entropy_scale: float = setting(1.0, low=-10, high=10)  # target entropy = -scale * |A|; the paper's -|A|
    brn_momentum: float = setting(0.99, low=0, high=1, high_inclusive=False)  # BRN running-statistics momentum (paper)
    brn_warmup_steps: int = setting(100_000, low=0)  # training passes per BRN layer as plain batch norm (paper)
    brn_r_max: float = setting(3.0, low=1)  # BRN: r = sigma_B / sigma_run clipped to [1/r_max, r_max] (paper)
    brn_d_max: float = setting(5.0, low=0)  # BRN: d = (mu_B - mu_run) / sigma_run clipped to +-d_max (paper)
    brn_epsilon: float = setting(1e-3, low=0, low_inclusive=False)  # BRN variance epsilon (authors' code)
    cdq: str = setting("on", choices=("on", "auto", "off"))  # clipped double-Q over twin critics: on (paper) | auto (= the domain is episodic) | off
    log_std_min: float = setting(-20.0, low=-100, high=100)  # lower clip of the actor's log std (authors' code)
    log_std_max: float = setting(2.0, low=-100, high=100)  # upper clip of the actor's log std (authors' code)

    ORDERED = (("log_std_min", "log_std_max"),)
    # CrossQ's UTD 1: one gradient update per environment step on MuJoCo (action repeat 1)
    DEFAULT_UPDATES_PER_FRAME = 1.0

    def num_heads(self, spec: AgentSpec) -> int:
        return cdq_heads(self.cdq, spec.episodic)


# -- Batch Renormalization --------------------------------------------------------------------

class BatchRenorm(nn.Module):
    """Batch Renormalization (Ioffe 2017) over all leading axes, learnable scale and bias.

    Training mode: y = (x - mu_B) / sigma_B * r + d with sigma = sqrt(var + epsilon),
    r = sg(clip(sigma_B / sigma_run, 1/r_max, r_max)), d = sg(clip((mu_B - mu_run) / sigma_run,
    -d_max, d_max)); r = 1, d = 0 while the layer's step counter is below `warmup`. Then the
    running mean/var (biased batch variance) move by `momentum` and the counter increments.
    Eval mode: y = (x - mu_run) / sqrt(var_run + epsilon). batch_stats: mean, var, steps."""

    momentum: float = 0.99
    epsilon: float = 1e-3
    warmup: int = 100_000
    r_max: float = 3.0
    d_max: float = 5.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        feat = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((feat,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((feat,), jnp.float32))
        steps = self.variable("batch_stats", "steps", lambda: jnp.zeros((), jnp.int32))
        scale = self.param("scale", nn.initializers.ones, (feat,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (feat,), jnp.float32)
        if not train:
            y = (x - ra_mean.value) * jax.lax.rsqrt(ra_var.value + self.epsilon)
        else:
            axes = tuple(range(x.ndim - 1))
            mu = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mu), axis=axes)
            sigma = jnp.sqrt(var + self.epsilon)
            ra_sigma = jnp.sqrt(ra_var.value + self.epsilon)
            r = jnp.clip(sigma / ra_sigma, 1.0 / self.r_max, self.r_max)
            d = jnp.clip((mu - ra_mean.value) / ra_sigma, -self.d_max, self.d_max)
            warm = steps.value >= self.warmup
            r = jax.lax.stop_gradient(jnp.where(warm, r, 1.0))
            d = jax.lax.stop_gradient(jnp.where(warm, d, 0.0))
            y = (x - mu) / sigma * r + d
            if not self.is_initializing():
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * jax.lax.stop_gradient(mu)
                ra_var.value = m * ra_var.value + (1.0 - m) * jax.lax.stop_gradient(var)
                steps.value = steps.value + 1
        return y * scale + bias


# -- networks ---------------------------------------------------------------------------------

class _BRNBody(nn.Module):
    """x -> BRN -> [Dense -> ReLU -> BRN] x depth. Parameters under `encoder_*` names;
    features per hidden block (`layer_i`, after its BRN) and `head_hidden`."""

    width: int
    depth: int
    brn: dict

    def features(self, x, train: bool):
        x = BatchRenorm(**self.brn, name="encoder_norm_in")(x, train)
        feats = {}
        for i in range(self.depth):
            x = nn.relu(nn.Dense(self.width, name=f"encoder_{i}")(x))
            x = BatchRenorm(**self.brn, name=f"encoder_norm_{i}")(x, train)
            feats[f"layer_{i}"] = x
        feats["head_hidden"] = x
        return x, feats


class CriticBody(_BRNBody):
    """One critic: x = concat(s, a) (..., O + A) -> (Q (..., 1), features)."""

    @nn.compact
    def __call__(self, x, train: bool):
        h, feats = self.features(x, train)
        return nn.Dense(1, name="predictor")(h), feats


class ActorBody(_BRNBody):
    """obs -> (mean (..., A), raw log std (..., A), features)."""

    act_dim: int = 1

    @nn.compact
    def __call__(self, obs, train: bool):
        h, feats = self.features(obs, train)
        return (nn.Dense(self.act_dim, name="predictor_mean")(h),
                nn.Dense(self.act_dim, name="predictor_log_std")(h), feats)


class BRNEnsemble:
    """`num_heads` independent copies of a module with batch statistics: parameters and
    statistics both {"head_0": ..., "head_1": ...}. Heads run one after the other (as
    agents.networks.Ensemble, for the CPU layouts); outputs stacked on a leading head axis."""

    def __init__(self, module: nn.Module, num_heads: int):
        self.body, self.num_heads = module, num_heads

    def init(self, key, *inputs):
        """-> (params, batch_stats)."""
        keys = jax.random.split(key, self.num_heads)
        vs = [self.body.init(keys[h], *inputs, False) for h in range(self.num_heads)]
        return ({f"head_{h}": v["params"] for h, v in enumerate(vs)},
                {f"head_{h}": v["batch_stats"] for h, v in enumerate(vs)})

    def apply(self, params, stats, *inputs, train: bool):
        """-> (outputs stacked (H, ...), new batch_stats (train) or the given ones (eval))."""
        outs, new = [], {}
        for h in range(self.num_heads):
            name = f"head_{h}"
            variables = {"params": params[name], "batch_stats": stats[name]}
            if train:
                out, upd = self.body.apply(variables, *inputs, True, mutable=["batch_stats"])
                new[name] = upd["batch_stats"]
            else:
                out = self.body.apply(variables, *inputs, False)
                new[name] = stats[name]
            outs.append(out)
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs), new


# -- state ------------------------------------------------------------------------------------

class CrossQ(struct.PyTreeNode):
    actor: TrainState
    actor_stats: dict        # the actor's BRN batch_stats
    critic: TrainState       # params {"head_0": ..., "head_1": ...}
    critic_stats: dict       # BRN batch_stats per head, {"head_0": ..., ...}
    temperature: TrainState  # params: log alpha
    last: dict               # latest actor/temperature metrics, repeated on delayed steps
    step: jax.Array          # critic updates done
    key: jax.Array
    config: Config = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)


_LAST = ("actor/loss", "actor/entropy", "temperature/loss")


class _Static:
    def __init__(self, c: Config, spec: AgentSpec):
        brn = dict(momentum=c.brn_momentum, epsilon=c.brn_epsilon, warmup=c.brn_warmup_steps,
                   r_max=c.brn_r_max, d_max=c.brn_d_max)
        self.actor = ActorBody(c.actor.width, c.actor.depth, brn, act_dim=spec.act_dim)
        self.critic = BRNEnsemble(CriticBody(c.critic.width, c.critic.depth, brn),
                                  c.num_heads(spec))
        self.tx = optax.adam(c.lr, b1=c.adam_b1, b2=0.999)
        self.target_entropy = -c.target_entropy_scale * spec.act_dim


@functools.lru_cache(maxsize=64)
def _static(config: Config, spec: AgentSpec) -> _Static:
    return _Static(config, spec)


def init(config: Config, spec: AgentSpec, seed: int) -> CrossQ:
    return _init(config, spec, jax.random.PRNGKey(seed))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(config: Config, spec: AgentSpec, key: jax.Array) -> CrossQ:
    s = _static(config, spec)
    key, k_actor, k_critic = jax.random.split(key, 3)
    obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
    act_ = jnp.zeros((1, spec.act_dim), jnp.float32)
    actor = s.actor.init(k_actor, obs, False)
    critic, critic_stats = s.critic.init(k_critic, jnp.concatenate([obs, act_], -1))
    zero = jnp.zeros((), jnp.float32)
    return CrossQ(actor=TrainState.create(actor["params"], s.tx),
                  actor_stats=actor["batch_stats"],
                  critic=TrainState.create(critic, s.tx), critic_stats=critic_stats,
                  temperature=temp.init(config.temperature_init, s.tx),
                  last={k: zero for k in _LAST},
                  step=jnp.zeros((), jnp.int32), key=key, config=config, spec=spec)


def networks(agent: CrossQ) -> dict:
    return {"actor": agent.actor.params, "critic": agent.critic.params}


def critic_heads(config: Config, spec: AgentSpec) -> int:
    return config.num_heads(spec)


# -- losses -----------------------------------------------------------------------------------

def _policy(s: _Static, c: Config, params, stats, obs, train: bool):
    """-> (mean, clipped log std, features, new batch_stats (train) or the given ones)."""
    variables = {"params": params, "batch_stats": stats}
    if train:
        (mean, log_std, feats), upd = s.actor.apply(variables, obs, True,
                                                    mutable=["batch_stats"])
        stats = upd["batch_stats"]
    else:
        mean, log_std, feats = s.actor.apply(variables, obs, False)
    return mean, jnp.clip(log_std, c.log_std_min, c.log_std_max), feats, stats


@functools.partial(jax.jit, static_argnames="deterministic")
def act(agent: CrossQ, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """obs (B, obs_dim) raw -> actions (B, act_dim) in [-1, 1], actor in eval mode;
    deterministic = tanh(mean)."""
    mean, log_std, _, _ = _policy(_static(agent.config, agent.spec), agent.config,
                                  agent.actor.params, agent.actor_stats, obs, False)
    if deterministic:
        return jnp.tanh(mean)
    return sample_tanh_gaussian(key, mean, log_std)[0]


def _q(s: _Static, params, stats, obs, action, train: bool):
    """Q (H, B) of every head, features, batch_stats."""
    (q, feats), stats = s.critic.apply(params, stats, jnp.concatenate([obs, action], -1),
                                       train=train)
    return q[..., 0], feats, stats


def _next_action(s: _Static, agent: CrossQ, next_obs, key):
    """a' ~ pi(.|s') (actor in eval mode) and log pi(a'|s')."""
    mean, log_std, _, _ = _policy(s, agent.config, agent.actor.params, agent.actor_stats,
                                  next_obs, False)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    return jax.lax.stop_gradient(action), jax.lax.stop_gradient(log_prob)


def _critic_loss(s: _Static, gamma: float, params, stats, batch, next_action, next_log_prob,
                 alpha):
    """The joint forward pass: one training-mode pass on [(s, a); (s', a')]. Loss 0.5 x sum
    over heads of mean squared TD error. Aux: (Q (H, B), target (B,), new batch_stats,
    features of the (s, a) half)."""
    b = batch["obs"].shape[0]
    obs = jnp.concatenate([batch["obs"], batch["next_obs"]], 0)
    action = jnp.concatenate([batch["action"], next_action], 0)
    q_all, feats, new_stats = _q(s, params, stats, obs, action, True)
    q, next_q = q_all[:, :b], jax.lax.stop_gradient(q_all[:, b:])
    v = min_scalar(next_q) - alpha * next_log_prob
    target = jax.lax.stop_gradient(
        batch["reward"] + gamma * (1.0 - batch["terminated"]) * v)
    loss = 0.5 * jnp.sum(jnp.mean(jnp.square(q - target[None]), axis=-1))
    feats = jax.tree.map(lambda f: f[:, :b], feats)
    return loss, (q, target, new_stats, feats)


def _actor_loss(s: _Static, c: Config, params, stats, critic_params, critic_stats, obs, alpha,
                key):
    """mean(alpha log pi(a|s) - min_h Q_h(s, a)), actor in training mode, critics in eval
    mode. Aux: (log pi (B,), new actor batch_stats, features)."""
    mean, log_std, feats, new_stats = _policy(s, c, params, stats, obs, True)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    q, _, _ = _q(s, critic_params, critic_stats, obs, action, False)
    return jnp.mean(alpha * log_prob - min_scalar(q)), (log_prob, new_stats, feats)


# -- update -----------------------------------------------------------------------------------

def _gradient_step(agent: CrossQ, batch: dict) -> tuple[CrossQ, dict]:
    s = _static(agent.config, agent.spec)
    c = agent.config
    key, k_next, k_actor = jax.random.split(agent.key, 3)
    alpha = temp.value(agent.temperature)
    next_action, next_log_prob = _next_action(s, agent, batch["next_obs"], k_next)
    (c_loss, (q, target, critic_stats, _)), c_grads = jax.value_and_grad(
        _critic_loss, argnums=2, has_aux=True)(s, agent.spec.discount, agent.critic.params,
                                               agent.critic_stats, batch, next_action,
                                               next_log_prob, alpha)
    critic = apply_gradients(agent.critic, c_grads, s.tx)

    def actor_and_temperature(_):
        (a_loss, (log_prob, actor_stats, _)), a_grads = jax.value_and_grad(
            _actor_loss, argnums=2, has_aux=True)(s, c, agent.actor.params, agent.actor_stats,
                                                  critic.params, critic_stats, batch["obs"],
                                                  alpha, k_actor)
        actor = apply_gradients(agent.actor, a_grads, s.tx)
        entropy = -jnp.mean(log_prob)
        temperature, t_loss = temp.step(agent.temperature, entropy, s.target_entropy, s.tx)
        last = {"actor/loss": a_loss, "actor/entropy": entropy, "temperature/loss": t_loss}
        return actor, actor_stats, temperature, last

    def skip(_):
        return agent.actor, agent.actor_stats, agent.temperature, agent.last

    due = agent.step % c.policy_delay == 0
    actor, actor_stats, temperature, last = jax.lax.cond(due, actor_and_temperature, skip,
                                                         None)
    metrics = {"critic/loss": c_loss, "critic/q_mean": jnp.mean(q),
               "critic/target_q_mean": jnp.mean(target),
               "critic/reward_mean": jnp.mean(batch["reward"]),
               **last, "actor/updated": due.astype(jnp.float32),
               "temperature/value": temp.value(temperature)}
    return agent.replace(actor=actor, actor_stats=actor_stats, critic=critic,
                         critic_stats=critic_stats, temperature=temperature, last=last,
                         step=agent.step + 1, key=key), metrics


@functools.partial(jax.jit, donate_argnums=0)
def update(agent: CrossQ, block: dict) -> tuple[CrossQ, dict]:
    """k gradient updates on a (k, batch, ...) block in one lax.scan (agents/base.py).
    actor/* and temperature/loss: the latest actor update's values at each step, averaged;
    actor/updated: the fraction of the k steps that updated actor and temperature."""
    return scan_updates(_gradient_step, agent, block,
                        ("actor/loss", "critic/loss", "temperature/loss"))


@jax.jit
def stability_metrics(agent: CrossQ, batch: dict) -> dict:
    """Norms, gradient norms and effective LR of actor and critics on one batch, and feature
    norms (agents/stability.py naming). The losses are the training ones (joint critic pass,
    training-mode actor); the batch statistics they would update are discarded."""
    s = _static(agent.config, agent.spec)
    k_next, k_actor = jax.random.split(jax.random.fold_in(agent.key, 7))
    alpha = temp.value(agent.temperature)
    next_action, next_log_prob = _next_action(s, agent, batch["next_obs"], k_next)
    (_, (_, _, _, c_feats)), c_grads = jax.value_and_grad(_critic_loss, argnums=2,
                                                          has_aux=True)(
        s, agent.spec.discount, agent.critic.params, agent.critic_stats, batch, next_action,
        next_log_prob, alpha)
    (_, (_, _, a_feats)), a_grads = jax.value_and_grad(_actor_loss, argnums=2, has_aux=True)(
        s, agent.config, agent.actor.params, agent.actor_stats, agent.critic.params,
        agent.critic_stats, batch["obs"], alpha, k_actor)
    return actor_critic_metrics(agent.actor.params, a_grads, a_feats,
                                agent.critic.params, c_grads, c_feats)
