"""Norm and effective-learning-rate metrics (the SimbaV2 paper's training-dynamics figure),
computed on device, under one naming scheme that every agent can follow:

  {network}/{group}/{quantity}          network: actor | critic (| any other network name)
                                        group: encoder | predictor | other | total
                                        quantity: pnorm, effective_pnorm, gnorm,
                                        effective_gnorm, effective_lr, featnorm
  {network}/encoder/{layer}/featnorm    per recorded layer

An agent's optional `stability_metrics(state, batch)` returns such names (use `norm_metrics`
and `feature_metrics` below on trees whose top-level keys start with `encoder` / `predictor`);
analysis draws `critic/{encoder,predictor}/{featnorm,effective_pnorm,effective_gnorm,
effective_lr}` for every method that logged them and names those that logged none.

Leaf l = one parameter array, n_l its element count, G a group (encoder, predictor, total):
  pnorm            sqrt(sum_{l in G} ||theta_l||^2)
  effective_pnorm  sqrt(sum n_l ||theta_l||^2 / sum n_l)   (what the paper plots)
  gnorm, effective_gnorm: the same with the raw gradients g_l (before Adam)
  effective_lr     sum n_l ||g_l|| / ||theta_l|| / sum n_l over leaves with ||theta_l|| > 0
                   (a zero-initialised bias has no meaningful ratio yet and is left out)
  featnorm         mean over the group's recorded layers of E_batch ||h_k||
Groups are the parameter tree's top-level keys whose name starts with `encoder` / `predictor`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GROUPS = ("encoder", "predictor")


def _group_of(path) -> str:
    top = str(getattr(path[0], "key", path[0]))
    for g in GROUPS:
        if top.startswith(g):
            return g
    return "other"


def _leaf_stats(tree) -> dict[str, list[tuple[int, jax.Array]]]:
    out: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out.setdefault(_group_of(path), []).append((leaf.size, jnp.sum(jnp.square(leaf))))
    return out


def norm_metrics(params, grads, prefix: str) -> dict[str, jax.Array]:
    """Parameter/gradient norms and effective LR per group and in total, named
    `{prefix}/{group}/{metric}`."""
    p_stats, g_stats = _leaf_stats(params), _leaf_stats(grads)
    out: dict[str, jax.Array] = {}
    groups = {g: (p_stats.get(g, []), g_stats.get(g, [])) for g in (*GROUPS, "other")}
    groups = {g: v for g, v in groups.items() if v[0]}
    groups["total"] = tuple(sum((v[i] for v in groups.values()), []) for i in (0, 1))
    for g, (ps, gs) in groups.items():
        n = jnp.asarray([c for c, _ in ps], jnp.float32)
        p2 = jnp.stack([s for _, s in ps])
        g2 = jnp.stack([s for _, s in gs])
        live = p2 > 0.0
        ratio = jnp.where(live, jnp.sqrt(g2) / jnp.sqrt(jnp.where(live, p2, 1.0)), 0.0)
        out[f"{prefix}/{g}/pnorm"] = jnp.sqrt(p2.sum())
        out[f"{prefix}/{g}/effective_pnorm"] = jnp.sqrt((n * p2).sum() / n.sum())
        out[f"{prefix}/{g}/gnorm"] = jnp.sqrt(g2.sum())
        out[f"{prefix}/{g}/effective_gnorm"] = jnp.sqrt((n * g2).sum() / n.sum())
        out[f"{prefix}/{g}/effective_lr"] = (n * ratio).sum() / jnp.maximum(
            (n * live).sum(), 1.0)
    return out


def feature_metrics(features: dict[str, jax.Array], prefix: str) -> dict[str, jax.Array]:
    """E_batch ||h|| of every recorded feature (any leading axes are averaged), per layer and
    per group: encoder layers are everything but the head's; predictor is the head's hidden
    vector (and the logits, reported on their own)."""
    norms = {k: jnp.mean(jnp.linalg.norm(v, axis=-1)) for k, v in features.items()}
    out = {f"{prefix}/encoder/{k}/featnorm": v for k, v in norms.items()
           if k not in ("head_hidden", "logits")}
    enc = [v for k, v in norms.items() if k not in ("head_hidden", "logits")]
    out[f"{prefix}/encoder/featnorm"] = jnp.mean(jnp.stack(enc))
    out[f"{prefix}/predictor/featnorm"] = norms["head_hidden"]
    if "logits" in norms:
        out[f"{prefix}/predictor/logits/featnorm"] = norms["logits"]
    return out


def actor_critic_metrics(actor_params, actor_grads, actor_feats: dict, critic_params,
                         critic_grads, critic_feats: dict) -> dict[str, jax.Array]:
    """Every metric of an actor and a critic ensemble ({"head_0": ..., ...}, counted stacked
    as the paper does for clipped double-Q), named `critic/...` and `actor/...`."""
    from agents.networks import stack_heads

    return {**norm_metrics(stack_heads(critic_params), stack_heads(critic_grads), "critic"),
            **feature_metrics(critic_feats, "critic"),
            **norm_metrics(actor_params, actor_grads, "actor"),
            **feature_metrics(actor_feats, "actor")}
