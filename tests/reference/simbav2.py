"""Float64 reference of one SimbaV2 gradient update, written from the SimbaV2 maths as
docs/simbav2.md states them, not from agents/. Run it inside `with jax.enable_x64(True):` on float64 inputs
(`common.f64`).

Parameter layout (plain dicts of arrays; every kernel is (in, out) and its name starts with "W",
which is how `project` finds the kernels that live on the unit sphere):

    body   = {"embed":  {"W": (n_in + 1, d), "s": (d,)},           # +1: the c_shift entry
              "blocks": [{"W1": (d, 4d), "s1": (4d,), "W2": (4d, d), "alpha": (d,)}] * L}
    head   = {"W1": (d, d), "s": (d,), "W2": (d, n_out), "b": (n_out,)}
    actor  = {"body": body, "mean": head, "std": head}              # n_in = |O|, n_out = |A|
    critic = [{"body": body, "head": head}] * H                     # n_in = |O| + |A|, n_out = N

Scalers hold the stored parameter p; the network uses p * init / scale (docs/simbav2.md, Scalers), with the
(init, scale) pairs of `scaler_constants`.

`update_step` also takes a `variant`: one of `VARIANTS`, each a plausible mistake (wrong update
order, wrong target, missing projection, ...). They exist so the tests can show, permanently, that
a comparison with this reference would catch each of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from tests.reference.common import Adam, polyak, tanh_gaussian

L2_EPS = 1e-8      # l2(x) = x / max(||x||, 1e-8)
RELU_EPS = 1e-8    # u = ReLU(u) + 1e-8 in the block MLP
EXPANSION = 4      # block MLP width 4d

# The wrong variants `update_step` can run instead of the correct update (None).
VARIANTS = (
    "old_actor",             # critic target: a' and log pi(a'|s') from the actor before its step
    "old_alpha",             # critic target: alpha before the temperature step
    "online_critic",         # critic target: p' from the online critic instead of the target
    "cdq_max",               # CDQ target: per sample the head with the LARGER expected value
    "cdq_mean",              # CDQ target: the average of the heads' distributions
    "cdq_batch_min",         # CDQ target: one head for the whole batch (smaller batch-mean Q)
    "ce_mean_heads",         # CDQ loss: heads' cross-entropies averaged instead of summed
    "no_terminal_mask",      # bootstrap through terminal transitions
    "critic_first",          # order critic -> actor -> temperature (target from old actor/alpha)
    "actor_new_alpha",       # order temperature -> actor (actor loss with the new alpha)
    "polyak_first",          # Polyak before the critic step (and the target built from it)
    "target_reprojected",    # target kernels projected onto the sphere after Polyak
    "no_actor_projection",   # actor kernels left off the sphere after the Adam step
    "no_critic_projection",  # critic kernels left off the sphere after the Adam step
)
CDQ_ONLY = ("cdq_max", "cdq_mean", "cdq_batch_min", "ce_mean_heads")  # equal to correct at H = 1


def l2(x):
    """x / max(||x||_2, 1e-8) over the last axis."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), L2_EPS)


# -- scalers (docs/simbav2.md: Scalers; paper vs released code) -------------------------------

def scaler_constants(width: int, depth: int, scheme: str = "paper") -> dict:
    """(init, scale) of every scaler of a body of width d = `width` with L = `depth` blocks, and
    of the heads. "paper" = the pre-release code behind the published numbers (embedder 1/1,
    block MLP 1/sqrt(d) for the 4d layer too); "release" = the released config (sqrt(2/d) and
    sqrt(2/d)/sqrt(4)). The LERP alpha (init 1/(L+1), scale 1/sqrt(d)) and the head scalers (1/1)
    are the same in both."""
    d = width
    if scheme == "paper":
        embed, mlp = 1.0, 1.0 / math.sqrt(d)
    elif scheme == "release":
        embed, mlp = math.sqrt(2.0 / d), math.sqrt(2.0 / d) / math.sqrt(EXPANSION)
    else:
        raise ValueError(f"unknown scaler scheme {scheme!r}")
    return {"embed": (embed, embed), "mlp": (mlp, mlp),
            "alpha": (1.0 / (depth + 1), 1.0 / math.sqrt(d)), "head": (1.0, 1.0)}


def _scaled(p, init_scale):
    init, scale = init_scale
    return p * (init / scale)


# -- networks (docs/simbav2.md: layers, blocks, heads) ----------------------------------------

def body_forward(body: dict, x, c_shift: float, scheme: str):
    """Embedder then L LERP blocks. x (B, n_in) -> unit-norm features (B, d)."""
    d, depth = body["embed"]["W"].shape[1], len(body["blocks"])
    sc = scaler_constants(d, depth, scheme)
    x = l2(jnp.concatenate([x, jnp.full(x.shape[:-1] + (1,), c_shift)], axis=-1))
    h = l2(_scaled(body["embed"]["s"], sc["embed"]) * (x @ body["embed"]["W"]))
    for blk in body["blocks"]:
        u = _scaled(blk["s1"], sc["mlp"]) * (h @ blk["W1"])
        u = jnp.maximum(u, 0.0) + RELU_EPS
        h_mlp = l2(u @ blk["W2"])
        h = l2(h + _scaled(blk["alpha"], sc["alpha"]) * (h_mlp - h))
    return h


def head_forward(head: dict, z):
    """Linear -> Scaler (init 1, scale 1) -> Linear + bias, no activation. z (B, d) -> (B, out)."""
    return (head["s"] * (z @ head["W1"])) @ head["W2"] + head["b"]


def actor_forward(actor: dict, obs, hp: "Hyper"):
    """obs (B, |O|) -> mean (B, |A|), log_std (B, |A|) in (log_std_min, log_std_max)."""
    z = body_forward(actor["body"], obs, hp.c_shift, hp.scheme)
    mean = head_forward(actor["mean"], z)
    raw = head_forward(actor["std"], z)
    log_std = hp.log_std_min + (hp.log_std_max - hp.log_std_min) * 0.5 * (1.0 + jnp.tanh(raw))
    return mean, log_std


def critic_logits(critic: list, obs, action, hp: "Hyper"):
    """obs (B, |O|), action (B, |A|) (not normalised) -> logits (H, B, N)."""
    x = jnp.concatenate([obs, action], axis=-1)
    return jnp.stack([head_forward(c["head"], body_forward(c["body"], x, hp.c_shift, hp.scheme))
                      for c in critic])


def support(hp: "Hyper"):
    """z_i = -g_max + i * delta, i = 0..N-1, delta = 2 g_max / (N - 1). (N,)"""
    return -hp.g_max + jnp.arange(hp.num_atoms) * (2.0 * hp.g_max / (hp.num_atoms - 1))


def project(params):
    """Every kernel (key starting with "W") gets unit-norm columns: W[:, j] / max(||W[:, j]||,
    1e-8), the norm over the input axis. Scalers, alphas and biases are untouched."""
    def leaf(path, x):
        name = getattr(path[-1], "key", "")
        if isinstance(name, str) and name.startswith("W"):
            return x / jnp.maximum(jnp.linalg.norm(x, axis=0, keepdims=True), L2_EPS)
        return x
    return jax.tree_util.tree_map_with_path(leaf, params)


# -- categorical target (docs/simbav2.md) -----------------------------------------------------

def c51_projection(target_atoms, probs, v_min: float, v_max: float):
    """m_j = sum_i p_i [(u_i - b_i + 1[l_i = u_i]) 1[j = l_i] + (b_i - l_i) 1[j = u_i]] with
    b_i = (clip(Tz_i) - v_min) / delta, l_i = floor(b_i), u_i = ceil(b_i).
    target_atoms (B, N) (the shifted atoms Tz before clipping), probs (B, N) -> m (B, N)."""
    n = probs.shape[-1]
    delta = (v_max - v_min) / (n - 1)
    b = (jnp.clip(target_atoms, v_min, v_max) - v_min) / delta
    b = jnp.clip(b, 0.0, n - 1)  # float rounding must not push ceil(b) past the last atom
    lo, up = jnp.floor(b), jnp.ceil(b)
    w_lo = up - b + (lo == up)
    w_up = b - lo
    j = jnp.arange(n)
    onehot_lo = (lo[..., None] == j).astype(probs.dtype)                  # (B, N_i, N_j)
    onehot_up = (up[..., None] == j).astype(probs.dtype)
    return (jnp.einsum("bi,bij->bj", probs * w_lo, onehot_lo)
            + jnp.einsum("bi,bij->bj", probs * w_up, onehot_up))


def select_head(probs, atoms, rule: str = "min"):
    """Clipped double Q on distributions: per sample, the whole distribution of the head with the
    smaller expected value. probs (H, B, N) -> (B, N). Other rules are the wrong variants."""
    q = probs @ atoms                                                     # (H, B)
    if rule == "min":
        idx = jnp.argmin(q, axis=0)
    elif rule == "max":
        idx = jnp.argmax(q, axis=0)
    elif rule == "mean":
        return jnp.mean(probs, axis=0)
    elif rule == "batch_min":
        idx = jnp.full(q.shape[1], jnp.argmin(jnp.mean(q, axis=1)))
    else:
        raise ValueError(rule)
    return probs[idx, jnp.arange(probs.shape[1])]


# -- one update (docs/simbav2.md: SAC losses and update order) --------------------------------

@dataclass(frozen=True)
class Hyper:
    """Everything the update needs besides parameters and data."""

    gamma: float
    tau: float
    num_atoms: int
    target_entropy: float     # -0.5 |A| by default
    adam: Adam                # one schedule for actor, critic and temperature
    g_max: float = 5.0
    c_shift: float = 3.0
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    scheme: str = "paper"


def init_state(actor, critic, target, log_alpha, hp: Hyper) -> dict:
    """A learner state with fresh Adam moments (zero, step 0) for actor, critic, temperature."""
    log_alpha = jnp.asarray(log_alpha)
    return {"actor": actor, "critic": critic, "target": target, "log_alpha": log_alpha,
            "opt": {"actor": hp.adam.init(actor), "critic": hp.adam.init(critic),
                    "temperature": hp.adam.init(log_alpha)}}


def _actor_loss(actor, critic, obs, eps, alpha, hp):
    mean, log_std = actor_forward(actor, obs, hp)
    a, log_prob = tanh_gaussian(mean, log_std, eps)
    q = jax.nn.softmax(critic_logits(critic, obs, a, hp), axis=-1) @ support(hp)   # (H, B)
    return jnp.mean(alpha * log_prob - jnp.min(q, axis=0)), (log_prob, mean + jnp.exp(log_std) * eps)


def _target(actor, target_critic, batch, eps_next, alpha, hp, rule="min", mask=True):
    """(m (B, N), diagnostics). m is a constant for the critic loss (computed outside it)."""
    atoms = support(hp)
    mean, log_std = actor_forward(actor, batch["next_obs"], hp)
    a_next, logp_next = tanh_gaussian(mean, log_std, eps_next)
    probs = jax.nn.softmax(critic_logits(target_critic, batch["next_obs"], a_next, hp), axis=-1)
    p_next = select_head(probs, atoms, rule)
    not_done = (1.0 - batch["terminated"]) if mask else jnp.ones_like(batch["terminated"])
    tz = batch["reward"][:, None] + hp.gamma * not_done[:, None] * (
        atoms[None, :] - alpha * logp_next[:, None])
    q_heads = probs @ atoms
    diag = {"u_next": mean + jnp.exp(log_std) * eps_next,
            "head_gap": (jnp.abs(q_heads[0] - q_heads[1]) if q_heads.shape[0] > 1
                         else jnp.full(q_heads.shape[1], jnp.inf))}
    return c51_projection(tz, p_next, -hp.g_max, hp.g_max), diag


def _critic_loss(critic, batch, m, hp, heads="sum"):
    logits = critic_logits(critic, batch["obs"], batch["action"], hp)            # (H, B, N)
    ce = -jnp.mean(jnp.sum(m * jax.nn.log_softmax(logits, axis=-1), axis=-1), axis=-1)  # (H,)
    return (jnp.sum(ce) if heads == "sum" else jnp.mean(ce)), logits


def update_step(state: dict, batch: dict, eps_actor, eps_next, hp: Hyper,
                variant: str | None = None) -> tuple[dict, dict, dict]:
    """One SimbaV2 update: actor -> temperature -> critic (target from the new actor
    and the new alpha, per-sample min head of the target critic) -> Polyak target.

    batch: obs, next_obs (B, |O|) normalised; action (B, |A|); reward (B,) already scaled;
    terminated (B,) in {0, 1}. eps_actor, eps_next (B, |A|): the standard-normal noise of the
    actor's reparameterised action at s and of the target's next action at s'.
    Returns (new state, metrics named as the agent's, diagnostics for the tests' guards)."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    adam, atoms = hp.adam, support(hp)
    actor0, critic0, target0, log_alpha0 = (state["actor"], state["critic"], state["target"],
                                            state["log_alpha"])
    alpha0 = jnp.exp(log_alpha0)
    post_actor = (lambda p: p) if variant == "no_actor_projection" else project
    post_critic = (lambda p: p) if variant == "no_critic_projection" else project

    def actor_step(critic, alpha):
        (loss, (log_prob, u)), grads = jax.value_and_grad(_actor_loss, has_aux=True)(
            actor0, critic, batch["obs"], eps_actor, alpha, hp)
        params, opt = adam.step(actor0, grads, state["opt"]["actor"])
        return post_actor(params), opt, loss, log_prob, u

    def temperature_step(entropy):
        # L(log alpha) = exp(log alpha) (H - H_target), H a constant: dL/dlog alpha = L
        loss = jnp.exp(log_alpha0) * (entropy - hp.target_entropy)
        params, opt = adam.step(log_alpha0, loss, state["opt"]["temperature"])
        return params, opt, loss

    def critic_step(actor, alpha, target_critic):
        rule = {"cdq_max": "max", "cdq_mean": "mean", "cdq_batch_min": "batch_min"}.get(
            variant, "min")
        m, diag = _target(actor, target_critic, batch, eps_next, alpha, hp, rule,
                          mask=variant != "no_terminal_mask")
        heads = "mean" if variant == "ce_mean_heads" else "sum"
        (loss, logits), grads = jax.value_and_grad(_critic_loss, has_aux=True)(
            critic0, batch, m, hp, heads)
        params, opt = adam.step(critic0, grads, state["opt"]["critic"])
        return post_critic(params), opt, loss, logits, m, diag

    if variant == "critic_first":
        critic, c_opt, c_loss, logits, m, diag = critic_step(actor0, alpha0, target0)
        actor, a_opt, a_loss, log_prob, u = actor_step(critic, alpha0)
        entropy = -jnp.mean(log_prob)
        log_alpha, t_opt, t_loss = temperature_step(entropy)
    else:
        if variant == "actor_new_alpha":
            # the temperature first, on the entropy the actor step would measure
            _, (log_prob0, _) = _actor_loss(actor0, critic0, batch["obs"], eps_actor, alpha0, hp)
            log_alpha, t_opt, t_loss = temperature_step(-jnp.mean(log_prob0))
            actor, a_opt, a_loss, log_prob, u = actor_step(critic0, jnp.exp(log_alpha))
        else:
            actor, a_opt, a_loss, log_prob, u = actor_step(critic0, alpha0)
            log_alpha, t_opt, t_loss = temperature_step(-jnp.mean(log_prob))
        entropy = -jnp.mean(log_prob)
        target_actor = actor0 if variant == "old_actor" else actor
        target_alpha = alpha0 if variant == "old_alpha" else jnp.exp(log_alpha)
        if variant == "polyak_first":
            target0 = polyak(target0, critic0, hp.tau)
        target_critic = critic0 if variant == "online_critic" else target0
        critic, c_opt, c_loss, logits, m, diag = critic_step(target_actor, target_alpha,
                                                             target_critic)

    target = target0 if variant == "polyak_first" else polyak(target0, critic, hp.tau)
    if variant == "target_reprojected":
        target = project(target)

    q = jax.nn.softmax(logits, axis=-1) @ atoms
    metrics = {
        "actor/loss": a_loss, "actor/entropy": entropy,
        "temperature/loss": t_loss, "temperature/value": jnp.exp(log_alpha),
        "critic/loss": c_loss, "critic/q_mean": jnp.mean(q),
        "critic/target_q_mean": jnp.mean(m @ atoms),
        "critic/reward_mean": jnp.mean(batch["reward"]),
    }
    diag = dict(diag, u_actor=u)
    new = {"actor": actor, "critic": critic, "target": target, "log_alpha": log_alpha,
           "opt": {"actor": a_opt, "critic": c_opt, "temperature": t_opt}}
    return new, metrics, diag


# -- host statistics (docs/simbav2.md: RSNorm, reward scaling), float64 numpy -----------------

def rsnorm_init(shape=()) -> dict:
    """Running statistics before any sample: mean 0, var 1, count 1e-4."""
    return {"mean": np.zeros(shape), "var": np.ones(shape), "count": 1e-4}


def rsnorm_update(stats: dict, x) -> dict:
    """Chan et al. parallel merge of a batch x (n, *shape) into the running statistics."""
    x = np.asarray(x, np.float64)
    n, mean_b, var_b = x.shape[0], x.mean(axis=0), x.var(axis=0)
    total = stats["count"] + n
    delta = mean_b - stats["mean"]
    m2 = stats["var"] * stats["count"] + var_b * n + delta**2 * stats["count"] * n / total
    return {"mean": stats["mean"] + delta * n / total, "var": m2 / total, "count": total}


def rsnorm_normalize(stats: dict, x):
    """(x - mean) / sqrt(var + 1e-8)."""
    return (np.asarray(x, np.float64) - stats["mean"]) / np.sqrt(stats["var"] + 1e-8)


def reward_scales(rewards, terminated, gamma: float, g_max: float = 5.0) -> np.ndarray:
    """sigma_G after each transition of a stream (the rule behind the published numbers: G restarts on
    `terminated` only, with the transition's own flag): G <- gamma (1 - term) G + r; the running
    mean/var of G (start: mean 0, var 1, count 1e-4) and G_rmax = max |G|;
    sigma_G = max(sqrt(Var[G] + 1e-8), G_rmax / g_max). rewards, terminated (T,) -> (T,)."""
    stats, g, g_rmax, out = rsnorm_init(), 0.0, 0.0, []
    for r, term in zip(np.asarray(rewards, np.float64), np.asarray(terminated, np.float64)):
        g = gamma * (1.0 - term) * g + r
        stats = rsnorm_update(stats, np.array([g]))
        g_rmax = max(g_rmax, abs(g))
        out.append(max(math.sqrt(stats["var"] + 1e-8), g_rmax / g_max))
    return np.array(out)
