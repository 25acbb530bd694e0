"""Target networks and clipped double-Q, for scalar and categorical critics."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cdq_heads(cdq: str, episodic: bool) -> int:
    """Critics in the ensemble: 2 (clipped double-Q) when `cdq` is on, or auto on an episodic
    domain (the SimbaV2 code's rule); else 1."""
    return 2 if {"auto": episodic, "on": True, "off": False}[cdq] else 1


def polyak(target, online, tau: float):
    """theta_bar <- (1 - tau) theta_bar + tau theta, leaf by leaf."""
    return jax.tree.map(lambda t, p: (1.0 - tau) * t + tau * p, target, online)


def min_scalar(q: jax.Array) -> jax.Array:
    """Clipped double-Q for scalar critics: q (H, B) -> (B,), the minimum over heads (H = 1
    passes through)."""
    return q[0] if q.shape[0] == 1 else jnp.min(q, axis=0)


def min_categorical(probs: jax.Array, atoms: jax.Array) -> jax.Array:
    """Clipped double-Q for categorical critics: per sample, the whole distribution of the head
    with the smaller expected value. probs (H, B, N), atoms (N,) -> (B, N)."""
    if probs.shape[0] == 1:
        return probs[0]
    idx = jnp.argmin(probs @ atoms, axis=0)                                      # (B,)
    return jnp.take_along_axis(probs, idx[None, :, None], axis=0)[0]
