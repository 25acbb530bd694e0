"""Parameters with their optimiser state, and the one optimiser step every agent uses."""

from __future__ import annotations

from typing import Callable

import flax.struct as struct
import optax


class TrainState(struct.PyTreeNode):
    """params: a parameter pytree; opt_state: its optax state."""

    params: dict
    opt_state: optax.OptState

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation) -> "TrainState":
        return cls(params, tx.init(params))


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation,
                    post: Callable | None = None) -> TrainState:
    """One optimiser step; `post(params) -> params` runs on the stepped parameters (SimbaV2's
    sphere projection; None for plain agents). `tx` may read the parameters (AdamW)."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(post(params) if post is not None else params, opt_state)
