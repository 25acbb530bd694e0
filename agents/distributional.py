"""Categorical (C51) value distributions: support, projection, clipped double-Q target, loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def support(num_atoms: int, v_min: float, v_max: float) -> np.ndarray:
    """Atom locations z_i = v_min + i * delta, shape (num_atoms,) (a numpy constant, so it can
    be cached outside any trace)."""
    return np.linspace(v_min, v_max, num_atoms, dtype=np.float32)


def project(target_atoms: jax.Array, probs: jax.Array, v_min: float, v_max: float) -> jax.Array:
    """C51 projection of the distribution with masses `probs` (B, N) at `target_atoms` (B, N)
    onto the fixed support of N atoms on [v_min, v_max]. Returns (B, N), rows sum to 1.

    Each mass goes to its two neighbouring support points with weights 1 - |b - j| (b = its
    fractional index), which is the official floor/ceil split written as a hat function: one
    fused elementwise-and-reduce instead of two scatters. An atom exactly on a support point
    puts all its mass there."""
    n = probs.shape[-1]
    delta = (v_max - v_min) / (n - 1)
    b = (jnp.clip(target_atoms, v_min, v_max) - v_min) / delta                    # (B, N_i)
    j = jnp.arange(n, dtype=b.dtype)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(b[..., :, None] - j))                # (B, N_i, N_j)
    return jnp.einsum("bi,bij->bj", probs, weights)


def expected_value(probs: jax.Array, atoms: jax.Array) -> jax.Array:
    """Sum_i p_i z_i over the last axis."""
    return probs @ atoms


def min_head(probs: jax.Array, atoms: jax.Array) -> jax.Array:
    """Clipped double-Q for distributions: per sample, the whole distribution of the head with
    the smaller expected value. probs (H, B, N) -> (B, N)."""
    if probs.shape[0] == 1:
        return probs[0]
    idx = jnp.argmin(expected_value(probs, atoms), axis=0)                        # (B,)
    return jnp.take_along_axis(probs, idx[None, :, None], axis=0)[0]


def cross_entropy(logits: jax.Array, target: jax.Array) -> jax.Array:
    """-(1/B) sum_b sum_j m_j log q_j for each head, summed over heads. logits (H, B, N),
    target (B, N) (shared by all heads)."""
    logq = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.mean(jnp.sum(target * logq, axis=-1), axis=-1))
