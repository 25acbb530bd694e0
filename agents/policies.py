"""Tanh-Gaussian policies, shared by every SAC-family agent (the temperature: agents.temperature)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def sample_tanh_gaussian(key: jax.Array, mean: jax.Array, log_std: jax.Array):
    """Reparameterised a = tanh(mean + std * eps) and log pi(a) (tanh Jacobian included).
    mean, log_std: (..., A) -> action (..., A), log_prob (...)."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * eps
    log_prob = -0.5 * eps**2 - log_std - _HALF_LOG_2PI
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    log_det = 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(log_prob - log_det, axis=-1)


def squash_log_std(raw: jax.Array, low: float, high: float) -> jax.Array:
    """Map an unbounded head output into (low, high) smoothly: low + (high - low) (1 + tanh) / 2."""
    return low + (high - low) * 0.5 * (1.0 + jnp.tanh(raw))
