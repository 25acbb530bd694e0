"""Hyperspherical building blocks of SimbaV2 (docs/simbav2.md), reusable by any agent.

Conventions: features are on the last axis; a projected kernel is stored under the parameter
name `PROJECTED` with flax layout (..., in, out), and `project_kernels` renormalises every
output unit's incoming weight vector (axis -2) to unit norm.
"""

from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

PROJECTED = "hyper_kernel"  # parameter name of every kernel kept on the unit sphere
EPS = 1e-8


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """x / max(||x||_2, 1e-8) along `axis`."""
    norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
    return x / jnp.maximum(norm, EPS)


def project_kernels(params):
    """Unit-norm every output unit's weight vector of every projected kernel (axis -2, which is
    the input axis of an (in, out) kernel and of a vmapped (n, in, out) kernel). Scalers,
    LERP alphas and biases are left alone."""

    def project(path, leaf):
        if getattr(path[-1], "key", None) == PROJECTED:
            return l2_normalize(leaf, axis=-2)
        return leaf

    return jax.tree_util.tree_map_with_path(project, params)


class HyperDense(nn.Module):
    """Bias-free linear layer whose kernel lives on the unit sphere (projected after init and
    after every optimiser step, by `project_kernels`). Init: orthogonal, gain 1."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(PROJECTED, nn.initializers.orthogonal(1.0, column_axis=0),
                            (x.shape[-1], self.features), jnp.float32)
        return x @ kernel


class Scaler(nn.Module):
    """nGPT-style re-parametrised per-feature scale: stored p starts at `scale`, the effective
    value p * init / scale starts at `init`, so under Adam it moves at about lr / scale."""

    features: int
    init_value: float
    scale: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.param("scaler", nn.initializers.constant(self.scale), (self.features,),
                       jnp.float32)
        return x * (p * (self.init_value / self.scale))


class Embedder(nn.Module):
    """h0 = l2(s_emb * (W l2([x; c_shift]))): the shift keeps the input's magnitude on the
    sphere."""

    width: int
    c_shift: float
    scaler: float  # init = scale of the embedding scaler

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        shift = jnp.full(x.shape[:-1] + (1,), self.c_shift, x.dtype)
        x = l2_normalize(jnp.concatenate([x, shift], axis=-1))
        h = l2_normalize(Scaler(self.width, self.scaler, self.scaler)(HyperDense(self.width)(x)))
        return h, {"input": x, "embedding": h}


class LerpBlock(nn.Module):
    """MLP (d -> 4d, scaler, ReLU + 1e-8, 4d -> d, l2) with a LERP residual
    h <- l2(h + alpha * (h_mlp - h)); alpha is a per-feature Scaler (init 1/(L+1), scale 1/sqrt d)."""

    width: int
    scaler: float        # init = scale of the 4d hidden scaler
    alpha_init: float
    expansion: int = 4

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        hidden = self.width * self.expansion
        u = Scaler(hidden, self.scaler, self.scaler)(HyperDense(hidden)(h))
        u = jax.nn.relu(u) + EPS  # epsilon: never an all-zero vector to normalise
        h_mlp = l2_normalize(HyperDense(self.width)(u))
        alpha = Scaler(self.width, self.alpha_init, 1.0 / math.sqrt(self.width))
        return l2_normalize(h + alpha(h_mlp - h))


class Encoder(nn.Module):
    """Embedder followed by `depth` LERP blocks; returns the unit-norm feature and the
    intermediate features (for the stability metrics)."""

    width: int
    depth: int
    c_shift: float
    embed_scaler: float
    block_scaler: float

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        h, feats = Embedder(self.width, self.c_shift, self.embed_scaler)(x)
        for i in range(self.depth):
            h = LerpBlock(self.width, self.block_scaler, 1.0 / (self.depth + 1),
                          name=f"block_{i}")(h)
            feats[f"block_{i}"] = h
        return h, feats


class LinearHead(nn.Module):
    """Linear -> Scaler -> Linear + bias, no nonlinearity (both linears projected)."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        hid = Scaler(self.hidden, 1.0, 1.0)(HyperDense(self.hidden)(z))
        bias = self.param("bias", nn.initializers.zeros, (self.out,), jnp.float32)
        return HyperDense(self.out)(hid) + bias, hid


def scaler_values(width: int, scheme: str) -> tuple[float, float]:
    """(embedding scaler, block hidden scaler) init=scale values for a width and a scheme:
    `paper` = the code behind the published numbers (1, 1/sqrt d); `release` = the released
    code (sqrt(2/d), sqrt(2/d)/sqrt(4)). docs/simbav2.md, paper vs released code."""
    schemes: dict[str, Callable[[int], tuple[float, float]]] = {
        "paper": lambda d: (1.0, 1.0 / math.sqrt(d)),
        "release": lambda d: (math.sqrt(2.0 / d), math.sqrt(2.0 / d) / 2.0),
    }
    if scheme not in schemes:
        raise ValueError(f"unknown scaler_init {scheme!r}; valid: {', '.join(schemes)}")
    return schemes[scheme](width)
