"""What the reference tests compare and how far apart is too far: tolerances, our optax state
read in the reference's layout, per-network checks (losses, Adam moments = gradients,
parameters), and the SAC-family state (actor, critic, target critic, temperature) shared by
SAC, Simba, CrossQ and SimbaV2. tests/test_reference_baselines.py explains the tolerances."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.reference.common import Adam, f64

TOL_LOSS = 2e-5
TOL_GRAD = 1e-4
TOL_PARAM = 2e-6
TOL_STAT = 2e-5
FAR = 10.0


def snapshot(tree):
    """A numpy copy (`update` donates its input state)."""
    return jax.tree.map(lambda x: np.array(x), tree)


def _adam_state(opt_state):
    """(count, mu, nu) of the ScaleByAdamState inside an optax chain state."""
    for s in opt_state:
        if hasattr(s, "mu"):
            return s.count, s.mu, s.nu
    raise AssertionError("no Adam state")



def _normals(key, shape: tuple[int, int], order: tuple[str, ...]) -> dict:
    """The update's key split `key, k_1, k_2 = split(key, 3)` and one (B, A) float32 normal
    draw per named sub-key, as the agents' sample_tanh_gaussian draws them."""
    keys = jax.random.split(jnp.asarray(key), 3)
    return {name: np.asarray(jax.random.normal(keys[1 + i], shape, jnp.float32))
            for i, name in enumerate(order)}



def _ref_adam(opt_state, convert) -> dict:
    count, mu, nu = _adam_state(opt_state)
    return {"m": f64(convert(mu)), "v": f64(convert(nu)), "n": int(count)}


# -- the checks ----------------------------------------------------------------------------------

def _leaves(tree):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


def _scaled_ratio(ours, ref, tol: float) -> float:
    """max |ours - ref| / (tol * max |ref|) over a tree."""
    o, r = _leaves(ours), _leaves(ref)
    scale = max(max((float(np.max(np.abs(x))) for x in r), default=0.0), 1e-12)
    return max((float(np.max(np.abs(a - b))) for a, b in zip(o, r)), default=0.0) / (tol * scale)


def _param_tolerance(ref_opt: dict, adam: Adam):
    """Per-element parameter tolerance after the reference's Adam step (module docstring)."""
    n = ref_opt["n"]
    if n == 0:
        return jax.tree.map(lambda v: np.full(np.shape(v), TOL_PARAM), ref_opt["v"])
    c2 = 1.0 - adam.b2 ** n
    root = jax.tree.map(lambda v: np.sqrt(np.asarray(v, np.float64) / c2), ref_opt["v"])
    g = max(float(np.max(x)) for x in jax.tree.leaves(root))
    lr = adam.lr(n - 1)
    return jax.tree.map(lambda s: TOL_PARAM + lr * 2 * TOL_GRAD * g / (s + adam.eps), root)


def _param_ratio(ours, ref, tol) -> float:
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) / t))
               for a, b, t in zip(jax.tree.leaves(ours), jax.tree.leaves(ref),
                                  jax.tree.leaves(tol)))


def _network_checks(name, params, opt_state, convert, ref_params, ref_opt, adam) -> tuple:
    """Adam count, moments and parameters of one network -> ({check: ratio}, tolerance)."""
    count, mu, nu = _adam_state(opt_state)
    tol = _param_tolerance(ref_opt, adam)
    out = {f"{name}/adam_count": 0.0 if int(count) == ref_opt["n"] else math.inf,
           f"{name}/grad_m": _scaled_ratio(convert(mu), ref_opt["m"], TOL_GRAD),
           f"{name}/grad_v": _scaled_ratio(convert(nu), ref_opt["v"], 2 * TOL_GRAD),
           f"{name}/params": _param_ratio(convert(params), ref_params, tol)}
    return out, tol


def _loss_ratio(ours, ref) -> float:
    return abs(float(ours) - float(ref)) / (TOL_LOSS * max(1.0, abs(float(ref))))



@dataclass
class Case:
    """One agent at one config: how to run ours, convert, step the reference, compare."""

    name: str
    agent: object
    config: object
    spec: object
    steps: int
    noise_order: tuple[str, ...]       # the update's `key, k_1, k_2 = split(key, 3)` names
    to_ref: Callable                   # our numpy state -> reference state (float64)
    ref_step: Callable                 # (ref state, batch, eps, wrong) -> (state, info)
    checks: Callable                   # (our state t+1, metrics t, ref state, info) -> ratios
    wrong: tuple[str, ...]


def sac_family_to_ref(actor_conv, critic_conv):
    def to_ref(s):
        return {"actor": f64(actor_conv(s.actor.params)), "critic": f64(critic_conv(s.critic.params)),
                "target": f64(critic_conv(s.target)),
                "log_alpha": f64(s.temperature.params),
                "opt": {"actor": _ref_adam(s.actor.opt_state, actor_conv),
                        "critic": _ref_adam(s.critic.opt_state, critic_conv),
                        "temperature": _ref_adam(s.temperature.opt_state, lambda x: x)}}
    return to_ref


def sac_family_checks(actor_conv, critic_conv, adams: Callable, tau: float):
    """adams() -> (actor, critic, temperature) Adam of the reference (LR, betas)."""
    def checks(s, metrics, ref, info):
        a_adam, c_adam, t_adam = adams()
        out = {k: _loss_ratio(metrics[k], info[k])
               for k in ("critic/loss", "actor/loss", "temperature/loss")}
        r, _ = _network_checks("actor", s.actor.params, s.actor.opt_state, actor_conv,
                               ref["actor"], ref["opt"]["actor"], a_adam)
        out.update(r)
        r, c_tol = _network_checks("critic", s.critic.params, s.critic.opt_state, critic_conv,
                                   ref["critic"], ref["opt"]["critic"], c_adam)
        out.update(r)
        # target = (1 - tau) target + tau critic: tau times the critic's allowance
        t_tol = jax.tree.map(lambda t: TOL_PARAM + tau * t, c_tol)
        out["target/params"] = _param_ratio(critic_conv(s.target), ref["target"], t_tol)
        r, _ = _network_checks("log_alpha", s.temperature.params, s.temperature.opt_state,
                               lambda x: x, ref["log_alpha"], ref["opt"]["temperature"],
                               t_adam)
        out.update(r)
        return out
    return checks


def _worst(ratios: dict, n: int = 4) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in sorted(ratios.items(), key=lambda kv: -kv[1])[:n])


@dataclass
class Trajectory:
    states: list          # our numpy states 0..K
    metrics: list         # our metrics of updates 0..K-1
    batches: list         # the K batches
    block_state: object   # our state after ONE `update` on the whole (K, B, ...) block
    block_metrics: dict


def trajectory(case: Case, block: dict) -> Trajectory:
    """Our agent from `init(config, spec, 0)` run for K = len(block) updates as K k=1 calls
    (every intermediate state kept), and once more as one K-block (one lax.scan)."""
    state = case.agent.init(case.config, case.spec, 0)
    states, metrics = [snapshot(state)], []
    for t in range(case.steps):
        state, m = case.agent.update(state, jax.tree.map(lambda x: x[t:t + 1], block))
        states.append(snapshot(state))
        metrics.append(snapshot(m))
    state, m = case.agent.update(case.agent.init(case.config, case.spec, 0), block)
    batches = [jax.tree.map(lambda x: x[t], block) for t in range(case.steps)]
    return Trajectory(states, metrics, batches, snapshot(state), snapshot(m))


def assert_k_block_matches(case: Case, traj: Trajectory, ref_state, info,
                           block_metrics: tuple[str, ...] = ()) -> None:
    """One `update` on the whole K-block (the lax.scan path) must end where the reference's
    step from our state K - 1 does (`ref_state`, `info`). The block's metrics are means over
    the K updates, so only the state checks are compared to the reference (`block_metrics`:
    the non-loss metric checks to leave out), and the losses to the single updates' mean."""
    ratios = case.checks(traj.block_state, traj.metrics[-1], ref_state, info)
    ratios = {k: v for k, v in ratios.items()
              if not (k.endswith("loss") or k in block_metrics)}
    assert max(ratios.values()) <= 1.0, _worst(ratios)
    for key in ("critic/loss", "actor/loss", "temperature/loss"):
        mean = np.mean([m[key] for m in traj.metrics])
        assert abs(traj.block_metrics[key] - mean) <= TOL_LOSS * max(1.0, abs(mean)), key


def assert_variant_is_far(case: Case, ratios_at: Callable[[int], dict], wrong: str) -> None:
    """A deliberate mistake `wrong` must move some compared quantity by >= FAR x its tolerance
    at some update t (`ratios_at(t)`), which shows the comparison would catch it in our code.
    Stops at the first update that shows it (deterministic: same inputs every run)."""
    best: dict = {}
    for t in range(case.steps):
        ratios = ratios_at(t)
        if max(ratios.values()) >= FAR:
            return
        best = max(best, ratios, key=lambda r: max(r.values(), default=0.0))
    pytest.fail(f"{wrong} is within {FAR} x tolerance of our update: {_worst(best)}")
