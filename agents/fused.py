"""The scanned k-update block: k gradient updates in one `lax.scan`, metrics averaged, and the
`health/finite` flag the runner stops on."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def scan_updates(step: Callable, state, block: dict,
                 losses: tuple[str, ...]) -> tuple[object, dict]:
    """Run `step(state, batch) -> (state, metrics)` once per leading index of `block`
    ((k, batch, ...) leaves). Returns the final state and every metric averaged over the k
    steps, plus `health/finite`: true when every value of the named `losses` was finite."""
    state, metrics = jax.lax.scan(step, state, block)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(metrics[k])) for k in losses]))
    out = {k: jnp.mean(v) for k, v in metrics.items()}
    out["health/finite"] = finite
    return state, out
