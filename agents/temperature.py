"""The SAC temperature: alpha = exp(log alpha), learned towards a target entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from agents.train_state import TrainState, apply_gradients


def init(alpha: float, tx: optax.GradientTransformation) -> TrainState:
    """A TrainState whose params are the scalar log alpha (float32)."""
    log_alpha = jnp.asarray(jnp.log(alpha), jnp.float32)
    return TrainState.create(log_alpha, tx)


def value(state: TrainState) -> jax.Array:
    """alpha (a positive scalar)."""
    return jnp.exp(state.params)


def loss(log_alpha: jax.Array, entropy: jax.Array, target_entropy: float) -> jax.Array:
    """SAC temperature loss alpha * (H - H_target); its gradient lowers alpha when the
    policy's entropy H is above target."""
    return jnp.exp(log_alpha) * (entropy - target_entropy)


def step(state: TrainState, entropy: jax.Array, target_entropy: float,
         tx: optax.GradientTransformation) -> tuple[TrainState, jax.Array]:
    """One optimiser step on `loss` at the (constant) batch entropy. -> (state, loss)."""
    t_loss, grad = jax.value_and_grad(loss)(state.params, jax.lax.stop_gradient(entropy),
                                            target_entropy)
    return apply_gradients(state, grad, tx), t_loss
