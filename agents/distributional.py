"""Categorical (C51) value distributions: support, projection, clipped double-Q target, loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agents.targets import min_categorical


def support(num_atoms: int, v_min: float, v_max: float) -> np.ndarray:
    """Atom locations z_i = v_min + i * delta, shape (num_atoms,) (a numpy constant, so it can
    be cached outside any trace)."""
    return np.linspace(v_min, v_max, num_atoms, dtype=np.float32)


def project(target_atoms: jax.Array, probs: jax.Array, v_min: float, v_max: float,
            method: str | None = None) -> jax.Array:
    """C51 projection of the distribution with masses `probs` (B, N) at `target_atoms` (B, N)
    onto the fixed support of N atoms on [v_min, v_max]. Returns (B, N), rows sum to 1.

    Each mass at fractional index b goes to l = floor(b) with weight 1 - (b - l) and to l + 1
    with weight b - l (docs/simbav2.md's floor/ceil split; an atom exactly on a support
    point puts all its mass there). Two equivalent forms, chosen per backend unless `method`
    says which: `scatter` (CPU default) adds the 2N weighted masses of each row into place,
    O(B N), 5x faster than the dense form on CPU; `dense` (accelerators) sums
    p_i max(0, 1 - |b_i - j|) over i, O(B N^2) but one fused, deterministic reduction, where a
    scatter-add would use atomics in nondeterministic order."""
    method = method or ("scatter" if jax.default_backend() == "cpu" else "dense")
    if method not in _PROJECTIONS:
        raise ValueError(f"unknown projection method {method!r}; valid: {', '.join(_PROJECTIONS)}")
    n = probs.shape[-1]
    delta = (v_max - v_min) / (n - 1)
    b = (jnp.clip(target_atoms, v_min, v_max) - v_min) / delta                    # (B, N)
    return _PROJECTIONS[method](b, probs)


def _project_scatter(b: jax.Array, probs: jax.Array) -> jax.Array:
    n = probs.shape[-1]
    lower = jnp.floor(b)
    upper_w = b - lower
    lower_i = lower.astype(jnp.int32)
    # at the top support point l + 1 would fall off the end; its weight is 0 there anyway
    idx = jnp.concatenate([lower_i, jnp.minimum(lower_i + 1, n - 1)], axis=-1)    # (B, 2N)
    mass = jnp.concatenate([probs * (1.0 - upper_w), probs * upper_w], axis=-1)   # (B, 2N)
    rows = jnp.arange(probs.shape[0])[:, None]
    return jnp.zeros_like(probs).at[rows, idx].add(mass)


def _project_dense(b: jax.Array, probs: jax.Array) -> jax.Array:
    j = jnp.arange(probs.shape[-1], dtype=b.dtype)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(b[..., :, None] - j))                # (B, N_i, N_j)
    return jnp.einsum("bi,bij->bj", probs, weights)


_PROJECTIONS = {"scatter": _project_scatter, "dense": _project_dense}


def expected_value(probs: jax.Array, atoms: jax.Array) -> jax.Array:
    """Sum_i p_i z_i over the last axis."""
    return probs @ atoms


# Clipped double-Q over categorical heads lives with the other target helpers.
min_head = min_categorical


def cross_entropy(logits: jax.Array, target: jax.Array) -> jax.Array:
    """-(1/B) sum_b sum_j m_j log q_j for each head, summed over heads. logits (H, B, N),
    target (B, N) (shared by all heads)."""
    logq = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.mean(jnp.sum(target * logq, axis=-1), axis=-1))
