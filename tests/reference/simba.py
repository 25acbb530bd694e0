"""Float64 reference of ONE Simba (v1) gradient step.

Written from Lee et al. 2024, "SimBa: Simplicity Bias for Scaling Up Parameters in Deep RL"
(arXiv:2410.09754, Sec. 4 and Fig. 2: pre-LayerNorm residual feed-forward blocks and a final
LayerNorm), the SimbaV2 authors' Simba baseline config (docs/agents.md `simba`) and the SAC
losses shared with sac.py, not from agents/simba.py:

  body      x -> h = x W_e + b_e -> L x [h <- h + W_2 relu(W_1 LN(h) + b_1) + b_2]
            (W_1: d -> 4d, W_2: 4d -> d) -> z = LN(h)
  LN        (h - mean(h)) / sqrt(var(h) + 1e-6) * g + b over features (flax's default epsilon,
            which the SimBa code uses: nn.LayerNorm())
  actor     mean = z W_m + b_m; log std = lmin + (lmax - lmin) (1 + tanh(z W_s + b_s)) / 2
            (SimBa's NormalTanhPolicy squashes the log std; it does not clip it)
  critic    Q_h = LN-body(concat(s, a)) w + b per head; clipped double-Q over the heads
  losses    sac.py (soft TD target, sum over heads of the MSE, alpha log pi - min Q,
            alpha (H - Hbar))
  optimiser AdamW (Loshchilov & Hutter 2019, decoupled): p <- p - lr (adam(g) + wd p) on EVERY
            actor and critic parameter (kernels, biases, LayerNorm scales and offsets), and on
            log alpha when `temperature_decay` is on
  order     actor (current alpha, online critics) -> temperature -> critic (TD target from the
            NEW actor and NEW alpha, target critics) -> Polyak (SimbaV2's order)

Observations reach the update already normalised (the running normaliser lives on the host),
so the reference takes normalised observations and has no normaliser.

Parameter layout (plain dicts of float64 arrays):
  body   {"embed": {"w": (in, d), "b"}, "blocks": [{"ln": {"g", "b"}, "up": {"w": (d, 4d),
          "b"}, "down": {"w": (4d, d), "b"}}, ...], "ln": {"g": (d,), "b": (d,)}}
  actor  {"body": body, "mean": {"w": (d, A), "b"}, "log_std": {"w", "b"}}
  critic [{"body": body, "out": {"w": (d, 1), "b": (1,)}}, ...]
  state  as sac.py's
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from tests.reference.common import Adam, tanh_gaussian
from tests.reference.sac import ORDER_ACTOR_FIRST, SHARED_WRONG, Hyper, dense, sac_family_step

LN_EPS = 1e-6

SIMBA_WRONG = {
    **SHARED_WRONG,
    "target_from_old_actor": "TD target from the actor and alpha before this step's updates "
                             "(SAC's order)",
    "target_with_old_alpha": "TD target from the new actor but the old alpha",
    "actor_on_target_critic": "actor loss on the target critics",
    "no_weight_decay": "Adam instead of AdamW for actor and critic",
    "decay_kernels_only": "weight decay only on Dense kernels (not biases / LayerNorm)",
    "temperature_decay_flipped": "the temperature's weight decay the other way round from the "
                                 "config (`temperature_weight_decay`)",
}


def layer_norm(p, x, eps: float = LN_EPS):
    """LayerNorm over the last axis with scale g and offset b: x (B, d) -> (B, d)."""
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + eps) * p["g"] + p["b"]


def simba_body(p, x):
    """Embedding, pre-LN residual blocks, final LN: x (B, in) -> z (B, d)."""
    h = dense(p["embed"], x)
    for blk in p["blocks"]:
        h = h + dense(blk["down"], jax.nn.relu(dense(blk["up"], layer_norm(blk["ln"], h))))
    return layer_norm(p["ln"], h)


def simba_policy(actor, obs, eps, log_std_min: float, log_std_max: float):
    """obs (B, O), eps (B, A) -> a (B, A), log pi (B,); log std tanh-squashed."""
    z = simba_body(actor["body"], obs)
    raw = dense(actor["log_std"], z)
    log_std = log_std_min + (log_std_max - log_std_min) * 0.5 * (1.0 + jnp.tanh(raw))
    return tanh_gaussian(dense(actor["mean"], z), log_std, eps)


def simba_critic(critic: list, obs, action):
    """Q (H, B) of every head on concat(s, a) (actions are not normalised)."""
    x = jnp.concatenate([obs, action], axis=-1)
    return jnp.stack([dense(h["out"], simba_body(h["body"], x))[:, 0] for h in critic])


@dataclass(frozen=True)
class SimbaConfig:
    """The Simba settings the reference needs (docs/agents.md `simba`)."""

    gamma: float
    tau: float
    lr: float
    weight_decay: float
    temperature_decay: bool        # log alpha decayed too (SimbaV2 repo) or not (Simba repo)
    target_entropy: float          # -scale |A|
    log_std_min: float = -10.0
    log_std_max: float = 2.0


def _is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "w"


def simba_step(cfg: SimbaConfig, state: dict, batch: dict, eps: dict, wrong: str | None = None):
    """One Simba gradient step (shapes and `eps`: sac.sac_family_step); AdamW with constant LR;
    `wrong`: None or a key of SIMBA_WRONG."""
    wd = 0.0 if wrong == "no_weight_decay" else cfg.weight_decay
    temp_decay = cfg.temperature_decay != (wrong == "temperature_decay_flipped")
    net_opt = Adam(cfg.lr, weight_decay=wd)
    hp = Hyper(cfg.gamma, cfg.tau, cfg.target_entropy, net_opt, net_opt,
               Adam(cfg.lr, weight_decay=cfg.weight_decay if temp_decay else 0.0),
               order=ORDER_ACTOR_FIRST,
               decay_mask=_is_kernel if wrong == "decay_kernels_only" else None)

    def policy(actor, obs, e):
        return simba_policy(actor, obs, e, cfg.log_std_min, cfg.log_std_max)

    return sac_family_step(policy, simba_critic, hp, state, batch, eps, wrong)
