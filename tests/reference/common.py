"""Float64 building blocks shared by the reference updates: Adam with a linear LR schedule,
the tanh-Gaussian policy, Polyak averaging. Parameters are plain dicts of float64 arrays.

Everything here is written from the textbook definitions (Kingma & Ba 2015 for Adam with bias
correction; Haarnoja et al. 2018 for the squashed Gaussian), not from agents/."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


def f64(tree):
    """Every leaf as a float64 jax array (call inside `jax.enable_x64(True)`)."""
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x, np.float64)), tree)


@dataclass(frozen=True)
class Adam:
    """Adam (b1, b2, eps) with bias correction, LR linear from lr_init to lr_end over `steps`
    updates: the n-th step (n = 0, 1, ...) uses lr_init + (lr_end - lr_init) min(n, steps)/steps."""

    lr_init: float
    lr_end: float | None = None
    steps: int = 1
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0   # decoupled (AdamW): p <- p - lr (update + wd p)

    def lr(self, n: int) -> float:
        end = self.lr_init if self.lr_end is None else self.lr_end
        return self.lr_init + (end - self.lr_init) * min(n, self.steps) / self.steps

    def init(self, params) -> dict:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return {"m": zeros, "v": zeros, "n": 0}

    def step(self, params, grads, state: dict, mask=None):
        """-> (new params, new state). `mask(path) -> bool` limits weight decay to some leaves."""
        n = state["n"]
        m = jax.tree.map(lambda m, g: self.b1 * m + (1 - self.b1) * g, state["m"], grads)
        v = jax.tree.map(lambda v, g: self.b2 * v + (1 - self.b2) * g * g, state["v"], grads)
        c1, c2 = 1 - self.b1 ** (n + 1), 1 - self.b2 ** (n + 1)
        lr = self.lr(n)

        def move(path, p, m, v):
            u = (m / c1) / (jnp.sqrt(v / c2) + self.eps)
            if self.weight_decay and (mask is None or mask(path)):
                u = u + self.weight_decay * p
            return p - lr * u

        new = jax.tree_util.tree_map_with_path(move, params, m, v)
        return new, {"m": m, "v": v, "n": n + 1}


def tanh_gaussian(mean, log_std, eps):
    """a = tanh(mean + exp(log_std) eps) and log pi(a) = log N(u; mean, std) - sum log(1 - a^2),
    computed directly (float64 keeps 1 - tanh^2 accurate for the |u| these tests reach).
    mean, log_std, eps: (B, A) -> a (B, A), log_prob (B,)."""
    u = mean + jnp.exp(log_std) * eps
    a = jnp.tanh(u)
    log_normal = -0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)
    return a, jnp.sum(log_normal - jnp.log(1 - a**2), axis=-1)


def polyak(target, online, tau: float):
    """theta_bar <- tau theta + (1 - tau) theta_bar."""
    return jax.tree.map(lambda t, o: tau * o + (1 - tau) * t, target, online)


def max_abs_diff(a, b) -> float:
    """The largest |a - b| over matching leaves of two trees (any float dtypes)."""
    leaves = jax.tree.leaves(jax.tree.map(
        lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))),
        a, b))
    return max(leaves) if leaves else 0.0
