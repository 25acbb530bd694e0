"""Float64 reference of ONE CrossQ gradient step, with Batch Renormalization.

Written from Bhatt et al. 2024 ("CrossQ: Batch Normalization in Deep Reinforcement Learning
for Greater Sample Efficiency and Simplicity", ICLR), Ioffe 2017 ("Batch Renormalization",
arXiv:1702.03275, Algorithm 1), docs/agents.md (`crossq`) and the SAC losses of sac.py, not
from agents/crossq.py.

Batch Renormalization of a layer input x (N, F), per feature, with learnable g, b:
  training  mu_B = mean x, var_B = mean (x - mu_B)^2 (biased), sigma_B = sqrt(var_B + eps),
            sigma = sqrt(var + eps) from the running var,
            r = sg(clip(sigma_B / sigma, 1/r_max, r_max)), d = sg(clip((mu_B - mu) / sigma, +-d_max)),
            y = g ((x - mu_B) / sigma_B r + d) + b,
            with r = 1, d = 0 (plain batch norm) while the layer has done fewer than `warmup`
            training passes (Ioffe's "r_max = 1, d_max = 0" start; CrossQ: a fixed warm-up
            instead of the paper's gradual relaxation);
            then mu <- m mu + (1 - m) mu_B, var <- m var + (1 - m) var_B, passes += 1.
            (Ioffe's Algorithm 1 averages sigma itself; CrossQ's code, which docs/agents.md
            follows for what the paper leaves open, averages the variance, as flax's
            BatchNorm does. The sigma rule is kept as a wrong variant, `running_sigma`.)
  eval      y = g (x - mu) / sqrt(var + eps) + b (running statistics, nothing updated)
Every layer counts its own training passes: critic layers count critic updates, actor layers
count actor updates.

Networks (docs/agents.md): critic concat(s, a) -> BRN -> [Dense -> ReLU -> BRN] x L ->
Dense(1), one per head; actor s -> BRN -> [Dense -> ReLU -> BRN] x L -> mean and log-std
heads, the log std hard-clipped to [log_std_min, log_std_max].

One update (no target network):
  1. a' ~ pi(.|s') with the actor in EVAL mode; a' and log pi(a'|s') are constants.
  2. Critic: ONE training-mode pass of every head on the batch-wise concatenation
     [(s, a); (s', a')] (2B rows), so the batch statistics cover both halves; Q(s, a) is the
     first half, Q(s', a') the second, stop-gradiented; y = r + gamma (1 - terminated)
     (min_h Q_h(s', a') - alpha log pi(a'|s')); loss 0.5 sum_h mean_B (Q_h(s, a) - y)^2; Adam.
     The pass's running statistics replace the critic's.
  3. Policy delay: on updates n with n % policy_delay == 0 (n = the update counter before this
     update: 0, 3, 6, ... — the phase our agent documents; the authors' code updates on
     (n + 1) % policy_delay == 0, i.e. 2, 5, 8, ..., kept as the wrong variant
     `delay_phase_authors_code`), the actor in TRAINING mode (its running statistics updated)
     on mean(alpha log pi(a|s) - min_h Q_h(s, a)) with the NEW critics in EVAL mode (their new
     running statistics, not updated), alpha the current one; then the temperature on
     alpha (H - Hbar) with the actor step's entropy.
  Adam (b1 = 0.5, b2 = 0.999) for critic, actor and temperature (docs/agents.md).

Parameter layout (plain dicts of float64 arrays; steps stored as float64 counts):
  body   {"norm_in": {"g": (in,), "b"}, "hidden": [{"dense": {"w", "b"}, "norm": {"g", "b"}}]}
  stats  {"norm_in": {"mean": (in,), "var": (in,), "steps": ()}, "hidden": [{...}, ...]}
  actor  {"body": body, "mean": {"w": (d, A), "b"}, "log_std": {"w", "b"}}
  critic [{"body": body, "out": {"w": (d, 1), "b": (1,)}}, ...]
  state  {"actor", "actor_stats": stats, "critic", "critic_stats": [stats per head],
          "log_alpha", "step": int (updates done), "opt": {"actor", "critic", "temperature"}}
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from tests.reference.common import Adam, tanh_gaussian
from tests.reference.sac import (actor_objective, dense, reduce_heads, soft_td_target,
                                 td_loss, temperature_objective)

CROSSQ_WRONG = {
    "target_without_entropy": "TD target without the - alpha log pi(a'|s') term",
    "target_max_over_heads": "TD target with max instead of min over the twin critics",
    "actor_mean_over_heads": "actor loss with the mean instead of the min over the critics",
    "temperature_log_alpha_loss": "temperature loss log(alpha) (H - Hbar)",
    "critic_loss_without_half": "critic loss without the factor 0.5",
    "no_stop_gradient": "gradient also flows through Q(s', a') in the TD target",
    "separate_passes": "two training-mode passes, (s, a) and (s', a') each with its own batch "
                       "statistics (running statistics from the (s, a) pass)",
    "next_action_train_mode": "a' from the actor in training mode (batch statistics of s')",
    "no_renorm_after_warmup": "plain batch norm after the warm-up too (r = 1, d = 0)",
    "renorm_during_warmup": "r, d corrections from the first pass (no warm-up)",
    "rd_unclipped": "r, d not clipped to [1/r_max, r_max] / [-d_max, d_max]",
    "warmup_by_update": "every layer's warm-up counted in critic updates, not its own passes",
    "running_sigma": "running sigma averaged (Ioffe's Algorithm 1) instead of the variance",
    "unbiased_running_var": "running variance fed the unbiased batch variance N/(N-1) var_B",
    "delay_phase_authors_code": "actor and temperature on updates with (n + 1) % delay == 0",
    "no_policy_delay": "actor and temperature on every update",
    "actor_in_eval_mode": "actor loss with the actor in eval mode (running statistics)",
    "actor_critic_train_mode": "actor loss with the critics in training mode",
    "actor_on_old_critic": "actor loss on the critics (and statistics) before this update",
    "temperature_beta1_default": "the temperature's Adam with b1 = 0.9 (the authors' code)",
}


@dataclass(frozen=True)
class CrossQConfig:
    """The CrossQ settings the reference needs (docs/agents.md `crossq`)."""

    gamma: float
    lr: float
    b1: float
    policy_delay: int
    target_entropy: float
    momentum: float
    warmup: int
    r_max: float
    d_max: float
    epsilon: float
    log_std_min: float = -20.0
    log_std_max: float = 2.0


# -- Batch Renormalization ---------------------------------------------------------------------

def brn_train(cfg: CrossQConfig, p, s, x, update: int, wrong: str = ""):
    """Training-mode BRN of x (N, F) with params p {"g", "b"} and running statistics s
    {"mean", "var", "steps"} -> (y (N, F), new statistics). `update`: the agent's update
    counter (only for the `warmup_by_update` wrong variant)."""
    mu = jnp.mean(x, axis=0)
    var = jnp.mean((x - mu) ** 2, axis=0)
    sigma = jnp.sqrt(var + cfg.epsilon)
    sigma_run = jnp.sqrt(s["var"] + cfg.epsilon)
    r, d = sigma / sigma_run, (mu - s["mean"]) / sigma_run
    if wrong != "rd_unclipped":
        r, d = jnp.clip(r, 1.0 / cfg.r_max, cfg.r_max), jnp.clip(d, -cfg.d_max, cfg.d_max)
    passes = update if wrong == "warmup_by_update" else s["steps"]
    renorm = {"no_renorm_after_warmup": False, "renorm_during_warmup": True}.get(
        wrong, passes >= cfg.warmup)
    r = jax.lax.stop_gradient(jnp.where(renorm, r, 1.0))
    d = jax.lax.stop_gradient(jnp.where(renorm, d, 0.0))
    y = p["g"] * ((x - mu) / sigma * r + d) + p["b"]

    m = cfg.momentum
    mu_sg, var_sg = jax.lax.stop_gradient(mu), jax.lax.stop_gradient(var)
    if wrong == "unbiased_running_var":
        var_sg = var_sg * x.shape[0] / (x.shape[0] - 1)
    if wrong == "running_sigma":
        new_var = (m * sigma_run + (1 - m) * jax.lax.stop_gradient(sigma)) ** 2 - cfg.epsilon
    else:
        new_var = m * s["var"] + (1 - m) * var_sg
    return y, {"mean": m * s["mean"] + (1 - m) * mu_sg, "var": new_var, "steps": s["steps"] + 1}


def brn_eval(cfg: CrossQConfig, p, s, x):
    """Eval-mode BRN: the running statistics, x (N, F) -> (N, F)."""
    return p["g"] * (x - s["mean"]) / jnp.sqrt(s["var"] + cfg.epsilon) + p["b"]


def brn_body(cfg: CrossQConfig, p, s, x, train: bool, update: int = 0, wrong: str = ""):
    """x -> BRN -> [Dense -> ReLU -> BRN] x L: x (N, in) -> (h (N, d), new statistics; the
    given ones in eval mode)."""
    def norm(pn, sn, h):
        if train:
            return brn_train(cfg, pn, sn, h, update, wrong)
        return brn_eval(cfg, pn, sn, h), sn

    h, s_in = norm(p["norm_in"], s["norm_in"], x)
    hidden = []
    for layer, sl in zip(p["hidden"], s["hidden"]):
        h, s_new = norm(layer["norm"], sl, jax.nn.relu(dense(layer["dense"], h)))
        hidden.append(s_new)
    return h, {"norm_in": s_in, "hidden": hidden}


def crossq_policy(cfg: CrossQConfig, actor, stats, obs, eps, train: bool, update: int = 0,
                  wrong: str = ""):
    """obs (B, O), eps (B, A) -> (a (B, A), log pi (B,), new actor statistics)."""
    h, stats = brn_body(cfg, actor["body"], stats, obs, train, update, wrong)
    log_std = jnp.clip(dense(actor["log_std"], h), cfg.log_std_min, cfg.log_std_max)
    a, log_prob = tanh_gaussian(dense(actor["mean"], h), log_std, eps)
    return a, log_prob, stats


def crossq_critic(cfg: CrossQConfig, critic: list, stats: list, x, train: bool,
                  update: int = 0, wrong: str = ""):
    """Every head on x = concat(s, a) (N, O + A) -> (Q (H, N), new statistics per head)."""
    qs, new = [], []
    for head, sh in zip(critic, stats):
        h, s_new = brn_body(cfg, head["body"], sh, x, train, update, wrong)
        qs.append(dense(head["out"], h)[:, 0])
        new.append(s_new)
    return jnp.stack(qs), new


# -- one update --------------------------------------------------------------------------------

def actor_due(cfg: CrossQConfig, update: int, wrong: str = "") -> bool:
    """Whether update number `update` (0-based, before it runs) trains actor and temperature."""
    if wrong == "no_policy_delay":
        return True
    if wrong == "delay_phase_authors_code":
        return (update + 1) % cfg.policy_delay == 0
    return update % cfg.policy_delay == 0


def crossq_step(cfg: CrossQConfig, state: dict, batch: dict, eps: dict,
                wrong: str | None = None):
    """One CrossQ update. batch: obs/next_obs (B, O), action (B, A), reward/terminated (B,);
    eps {"next": (B, A) for a', "actor": (B, A) for the actor loss}; `wrong`: None or a key
    of CROSSQ_WRONG. Returns (new state, info) with the losses (actor/temperature only when
    the actor was due), "actor_updated" and the gradients."""
    w = wrong or ""
    n = int(state["step"])
    actor, actor_stats = state["actor"], state["actor_stats"]
    critic, critic_stats, log_alpha = state["critic"], state["critic_stats"], state["log_alpha"]
    opt = state["opt"]
    alpha = jnp.exp(log_alpha)
    critic_opt = actor_opt = Adam(cfg.lr, b1=cfg.b1)
    temp_opt = Adam(cfg.lr, b1=0.9 if w == "temperature_beta1_default" else cfg.b1)

    # 1. a' ~ pi(.|s'), actor in eval mode (its statistics are not touched)
    next_action, next_log_prob, _ = crossq_policy(
        cfg, actor, actor_stats, batch["next_obs"], eps["next"],
        train=w == "next_action_train_mode", update=n)
    next_action = jax.lax.stop_gradient(next_action)
    next_log_prob = jax.lax.stop_gradient(next_log_prob)

    # 2. critic: the joint training-mode pass
    b = batch["obs"].shape[0]
    sa = jnp.concatenate([batch["obs"], batch["action"]], -1)
    next_sa = jnp.concatenate([batch["next_obs"], next_action], -1)

    def critic_loss(c):
        if w == "separate_passes":
            q, new_stats = crossq_critic(cfg, c, critic_stats, sa, True, n, w)
            next_q, _ = crossq_critic(cfg, c, critic_stats, next_sa, True, n, w)
        else:
            q_all, new_stats = crossq_critic(cfg, c, critic_stats,
                                             jnp.concatenate([sa, next_sa], 0), True, n, w)
            q, next_q = q_all[:, :b], q_all[:, b:]
        if w != "no_stop_gradient":
            next_q = jax.lax.stop_gradient(next_q)
        y = soft_td_target(batch["reward"], batch["terminated"], cfg.gamma, next_q, alpha,
                           next_log_prob, with_entropy=w != "target_without_entropy",
                           how="max" if w == "target_max_over_heads" else "min",
                           constant=w != "no_stop_gradient")
        scale = 1.0 if w == "critic_loss_without_half" else 0.5
        return td_loss(q, y, scale), new_stats

    (c_loss, new_critic_stats), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(critic)
    new_critic, new_critic_opt = critic_opt.step(critic, c_grads, opt["critic"])
    info = {"critic/loss": c_loss, "grads": {"critic": c_grads}, "actor_updated": False}
    new_state = {**state, "critic": new_critic, "critic_stats": new_critic_stats,
                 "step": n + 1, "opt": {**opt, "critic": new_critic_opt}}

    # 3. every policy_delay-th update: actor (training mode) on the new critics (eval mode),
    # then the temperature
    if not actor_due(cfg, n, w):
        return new_state, info
    if w == "actor_on_old_critic":
        q_params, q_stats = critic, critic_stats
    else:
        q_params, q_stats = new_critic, new_critic_stats

    def actor_loss(a):
        action, log_prob, new_stats = crossq_policy(
            cfg, a, actor_stats, batch["obs"], eps["actor"], train=w != "actor_in_eval_mode",
            update=n, wrong=w)
        q, _ = crossq_critic(cfg, q_params, q_stats,
                             jnp.concatenate([batch["obs"], action], -1),
                             train=w == "actor_critic_train_mode", update=n, wrong=w)
        how = "mean" if w == "actor_mean_over_heads" else "min"
        return actor_objective(alpha, log_prob, q, how), (log_prob, new_stats)

    (a_loss, (log_prob, new_actor_stats)), a_grads = jax.value_and_grad(
        actor_loss, has_aux=True)(actor)
    new_actor, new_actor_opt = actor_opt.step(actor, a_grads, opt["actor"])
    entropy = -jnp.mean(log_prob)
    t_loss, t_grad = jax.value_and_grad(temperature_objective)(
        log_alpha, entropy, cfg.target_entropy, w == "temperature_log_alpha_loss")
    new_log_alpha, new_temp_opt = temp_opt.step(log_alpha, t_grad, opt["temperature"])

    new_state.update(actor=new_actor, actor_stats=new_actor_stats, log_alpha=new_log_alpha,
                     opt={**new_state["opt"], "actor": new_actor_opt,
                          "temperature": new_temp_opt})
    info.update({"actor/loss": a_loss, "temperature/loss": t_loss, "actor_updated": True})
    info["grads"].update(actor=a_grads, log_alpha=t_grad)
    return new_state, info
