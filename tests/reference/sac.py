"""Float64 reference of ONE SAC gradient step, and the soft actor-critic pieces the Simba and
CrossQ references share (one implementation each).

Written from Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"
(arXiv:1812.05905) and docs/agents.md (`sac`), not from agents/sac.py:

  next action   a' = tanh(mu(s') + sigma(s') eps'),  log pi(a'|s') with the tanh correction
  TD target     y = r + gamma (1 - terminated) (min_h Qbar_h(s', a') - alpha log pi(a'|s'))
                (eqs. 3 and 7 with the clipped double-Q of Fujimoto et al. 2018; y is a constant)
  critic loss   J_Q = sum_h mean_B (Q_h(s, a) - y)^2                       (eq. 5, every head)
  actor loss    J_pi = mean_B (alpha log pi(a|s) - min_h Q_h(s, a)),  a = tanh(mu + sigma eps)
                (eq. 7, reparameterised; the twin critics' minimum, as in the paper's code)
  temperature   J(alpha) = alpha (H - Hbar), H = -mean_B log pi(a|s) from the actor step's
                sample held constant (eq. 18); the parameter is log alpha, so the gradient is
                alpha (H - Hbar)
  target nets   theta_bar <- tau theta + (1 - tau) theta_bar, after the critic step

Update order (docs/agents.md `sac`, the paper's Algorithm 1): critic (target from the current
actor, alpha and target critics) -> actor (on the NEW critics, the current alpha) ->
temperature -> Polyak. Simba (simba.py) runs the same losses in the SimbaV2 order
(`ORDER_ACTOR_FIRST`).

The network of this file: ReLU MLPs (the paper's 2 x 256, here any width/depth); the actor's
last hidden layer feeds a mean head and a log-std head, the log std clipped to
[log_std_min, log_std_max] (softlearning's hard clip, docs/agents.md).

Parameter layout (plain dicts of float64 arrays):
  actor  {"hidden": [{"w": (in, d), "b": (d,)}, ...], "mean": {"w", "b"}, "log_std": {"w", "b"}}
  critic [head, ...] with head = {"hidden": [...], "out": {"w": (d, 1), "b": (1,)}}
  state  {"actor", "critic", "target" (like critic), "log_alpha" (), "opt": {"actor",
          "critic", "temperature": Adam states (common.Adam)}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from tests.reference.common import Adam, polyak, tanh_gaussian

ORDER_CRITIC_FIRST = "critic_first"   # SAC: critic -> actor -> temperature -> Polyak
ORDER_ACTOR_FIRST = "actor_first"     # SimbaV2 / Simba: actor -> temperature -> critic -> Polyak

# Wrong variants shared by every SAC-family reference (each a deliberate mistake the tests
# must be able to tell apart from the documented algorithm).
SHARED_WRONG = {
    "target_without_entropy": "TD target without the - alpha log pi(a'|s') term",
    "target_from_online_critic": "TD target from the online critics instead of the targets",
    "target_max_over_heads": "TD target with max instead of min over the twin critics",
    "actor_mean_over_heads": "actor loss with the mean instead of the min over the critics",
    "temperature_log_alpha_loss": "temperature loss log(alpha) (H - Hbar) (softlearning's form; "
                                  "gradient without the factor alpha)",
}
SAC_WRONG = {
    **SHARED_WRONG,
    "actor_on_old_critic": "actor loss on the critics before this step's critic update",
    "temperature_before_actor": "temperature stepped before the actor (actor uses new alpha)",
    "polyak_from_old_critic": "Polyak average towards the critics before their update",
}


# -- losses shared by the SAC family ---------------------------------------------------------

def reduce_heads(q, how: str = "min"):
    """Clipped double-Q over a critic ensemble: q (H, B) -> (B,) (H = 1 passes through).
    `how` = "max" / "mean" only for the wrong variants."""
    return {"min": jnp.min, "max": jnp.max, "mean": jnp.mean}[how](q, axis=0)


def soft_td_target(reward, terminated, gamma: float, next_q, alpha, next_log_prob,
                   with_entropy: bool = True, how: str = "min", constant: bool = True):
    """y = r + gamma (1 - terminated) (min_h Q_h(s', a') - alpha log pi(a'|s')), a constant
    (`constant=False` only for CrossQ's no-stop-gradient wrong variant).
    reward, terminated, next_log_prob (B,); next_q (H, B) -> (B,)."""
    v = reduce_heads(next_q, how)
    if with_entropy:
        v = v - alpha * next_log_prob
    y = reward + gamma * (1.0 - terminated) * v
    return jax.lax.stop_gradient(y) if constant else y


def td_loss(q, y, scale: float = 1.0):
    """scale * sum over heads of the mean squared TD error: q (H, B), y (B,) -> ()."""
    return scale * jnp.sum(jnp.mean((q - y[None]) ** 2, axis=-1))


def actor_objective(alpha, log_prob, q, how: str = "min"):
    """mean_B (alpha log pi(a|s) - min_h Q_h(s, a)): log_prob (B,), q (H, B) -> ()."""
    return jnp.mean(alpha * log_prob - reduce_heads(q, how))


def temperature_objective(log_alpha, entropy, target_entropy: float, log_form: bool = False):
    """SAC eq. 18, alpha (H - Hbar) with alpha = exp(log alpha) (the agents' form); `log_form`:
    log(alpha) (H - Hbar), softlearning's, a wrong variant here. entropy: () constant."""
    coef = log_alpha if log_form else jnp.exp(log_alpha)
    return coef * (jax.lax.stop_gradient(entropy) - target_entropy)


# -- the SAC network ---------------------------------------------------------------------------

def dense(p, x):
    """x (..., in) @ w (in, out) + b (out,)."""
    return x @ p["w"] + p["b"]


def relu_mlp(hidden: list, x):
    """The hidden ReLU layers: x (B, in) -> (B, d)."""
    for layer in hidden:
        x = jax.nn.relu(dense(layer, x))
    return x


def sac_policy(actor, obs, eps, log_std_min: float, log_std_max: float):
    """obs (B, O), eps (B, A) -> a (B, A), log pi(a|s) (B,); log std hard-clipped."""
    h = relu_mlp(actor["hidden"], obs)
    log_std = jnp.clip(dense(actor["log_std"], h), log_std_min, log_std_max)
    return tanh_gaussian(dense(actor["mean"], h), log_std, eps)


def mlp_critic(critic: list, obs, action):
    """Q (H, B) of every head on concat(s, a)."""
    x = jnp.concatenate([obs, action], axis=-1)
    return jnp.stack([dense(head["out"], relu_mlp(head["hidden"], x))[:, 0] for head in critic])


# -- one step of the SAC family ----------------------------------------------------------------

@dataclass(frozen=True)
class Hyper:
    """What one SAC-family step needs besides the networks. Adam objects carry LR, betas and
    (Simba) decoupled weight decay; `decay_mask(path) -> bool` picks the decayed leaves of
    actor and critic (None: every leaf, when the optimiser decays at all)."""

    gamma: float
    tau: float
    target_entropy: float
    actor_opt: Adam
    critic_opt: Adam
    temp_opt: Adam
    order: str = ORDER_CRITIC_FIRST
    decay_mask: Callable | None = None


def sac_family_step(policy: Callable, critic_fn: Callable, hp: Hyper, state: dict,
                    batch: dict, eps: dict, wrong: str | None = None):
    """One gradient step of a SAC-family agent.

    policy(actor, obs (B, O), eps (B, A)) -> (a (B, A), log pi (B,));
    critic_fn(critic, obs, action) -> Q (H, B);
    state as in the module docstring; batch: obs/next_obs (B, O), action (B, A), reward and
    terminated (B,); eps: {"next": (B, A) for a' ~ pi(.|s'), "actor": (B, A) for the actor
    loss's a ~ pi(.|s)}; `wrong`: None or a key of SAC_WRONG / simba.SIMBA_WRONG.
    Returns (new state, info): info has the three losses and the gradients."""
    w = wrong or ""
    how_target = "max" if w == "target_max_over_heads" else "min"
    how_actor = "mean" if w == "actor_mean_over_heads" else "min"
    actor, critic, target = state["actor"], state["critic"], state["target"]
    log_alpha, opt = state["log_alpha"], state["opt"]

    def td_target(actor_params, alpha):
        next_action, next_log_prob = policy(actor_params, batch["next_obs"], eps["next"])
        bootstrap = critic if w == "target_from_online_critic" else target
        return soft_td_target(batch["reward"], batch["terminated"], hp.gamma,
                              critic_fn(bootstrap, batch["next_obs"], next_action), alpha,
                              next_log_prob, with_entropy=w != "target_without_entropy",
                              how=how_target)

    def critic_step(y):
        def loss(c):
            return td_loss(critic_fn(c, batch["obs"], batch["action"]), y)
        value, grads = jax.value_and_grad(loss)(critic)
        new, opt_state = hp.critic_opt.step(critic, grads, opt["critic"], hp.decay_mask)
        return new, opt_state, value, grads

    def actor_step(critic_params, alpha):
        def loss(a):
            action, log_prob = policy(a, batch["obs"], eps["actor"])
            return actor_objective(alpha, log_prob, critic_fn(critic_params, batch["obs"], action),
                                   how_actor), log_prob
        (value, log_prob), grads = jax.value_and_grad(loss, has_aux=True)(actor)
        new, opt_state = hp.actor_opt.step(actor, grads, opt["actor"], hp.decay_mask)
        return new, opt_state, value, grads, -jnp.mean(log_prob)

    def temperature_step(entropy):
        value, grad = jax.value_and_grad(temperature_objective)(
            log_alpha, entropy, hp.target_entropy, w == "temperature_log_alpha_loss")
        new, opt_state = hp.temp_opt.step(log_alpha, grad, opt["temperature"])
        return new, opt_state, value, grad

    alpha = jnp.exp(log_alpha)
    if hp.order == ORDER_CRITIC_FIRST:
        new_critic, critic_opt, c_loss, c_grads = critic_step(td_target(actor, alpha))
        if w == "temperature_before_actor":
            # the entropy of the actor's sample is known before the actor moves
            _, log_prob = policy(actor, batch["obs"], eps["actor"])
            new_log_alpha, temp_opt, t_loss, t_grad = temperature_step(-jnp.mean(log_prob))
            alpha_actor = jnp.exp(new_log_alpha)
        else:
            alpha_actor = alpha
        critic_for_actor = critic if w == "actor_on_old_critic" else new_critic
        new_actor, actor_opt, a_loss, a_grads, entropy = actor_step(critic_for_actor,
                                                                    alpha_actor)
        if w != "temperature_before_actor":
            new_log_alpha, temp_opt, t_loss, t_grad = temperature_step(entropy)
    elif hp.order == ORDER_ACTOR_FIRST:
        critic_for_actor = target if w == "actor_on_target_critic" else critic
        new_actor, actor_opt, a_loss, a_grads, entropy = actor_step(critic_for_actor, alpha)
        new_log_alpha, temp_opt, t_loss, t_grad = temperature_step(entropy)
        target_actor = actor if w == "target_from_old_actor" else new_actor
        target_alpha = alpha if w in ("target_from_old_actor", "target_with_old_alpha") \
            else jnp.exp(new_log_alpha)
        new_critic, critic_opt, c_loss, c_grads = critic_step(td_target(target_actor,
                                                                        target_alpha))
    else:
        raise ValueError(f"unknown order {hp.order!r}")

    polyak_source = critic if w == "polyak_from_old_critic" else new_critic
    new_state = {"actor": new_actor, "critic": new_critic,
                 "target": polyak(target, polyak_source, hp.tau), "log_alpha": new_log_alpha,
                 "opt": {"actor": actor_opt, "critic": critic_opt, "temperature": temp_opt}}
    info = {"critic/loss": c_loss, "actor/loss": a_loss, "temperature/loss": t_loss,
            "grads": {"actor": a_grads, "critic": c_grads, "log_alpha": t_grad}}
    return new_state, info


@dataclass(frozen=True)
class SACConfig:
    """The SAC settings the reference needs (docs/agents.md `sac`)."""

    gamma: float
    tau: float
    lr: float
    target_entropy: float          # -scale |A|
    log_std_min: float = -20.0
    log_std_max: float = 2.0


def sac_step(cfg: SACConfig, state: dict, batch: dict, eps: dict, wrong: str | None = None):
    """One SAC gradient step (shapes: `sac_family_step`); Adam with constant LR for all three
    optimisers, no weight decay."""
    adam = Adam(cfg.lr)
    hp = Hyper(cfg.gamma, cfg.tau, cfg.target_entropy, adam, adam, adam,
               order=ORDER_CRITIC_FIRST)

    def policy(actor, obs, e):
        return sac_policy(actor, obs, e, cfg.log_std_min, cfg.log_std_max)

    return sac_family_step(policy, mlp_critic, hp, state, batch, eps, wrong)
