"""Our jitted SAC, Simba and CrossQ updates against independent float64 references of one
gradient step (tests/reference/{sac,simba,crossq}.py, written from the papers and
docs/agents.md, not from agents/).

How the comparison works (teacher forcing). Each agent is built at a tiny size and run for K
updates as K calls of `update` on k = 1 blocks; before every call its state is copied to
numpy. For every update t the reference starts from OUR state t (parameters, Adam moments and
counts, target critics, log alpha, BRN running statistics and counters, converted exactly to
float64 in the reference layout), draws nothing itself (the test hands it the Gaussian noise
our update draws from its own key), and takes one step; the result is compared with our
state t + 1 and our metrics of update t. Errors therefore never accumulate across steps, and
each step is a one-step check from a genuinely trained state. One extra call runs the whole
K-update block in one `update` (one lax.scan) and its final state must match the reference
step from our state K - 1 as well.

What is compared, per update (each check is an error / tolerance ratio; pass: every ratio
<= 1; the wrong variants of the references must reach >= FAR = 10 somewhere):
  losses       critic/actor/temperature loss metrics, relative TOL_LOSS
  gradients    Adam's first and second moments m, v of every network (and log alpha): they
               are linear / quadratic in the gradients and never ill-conditioned, so they
               compare the gradients themselves; relative to the network's largest entry,
               TOL_GRAD (2 TOL_GRAD for v)
  parameters   actor, critic, target critic, log alpha, per element within
               TOL_PARAM + lr 2 TOL_GRAD G / (sqrt(v_hat) + eps): Adam moves a parameter by
               lr m_hat / sqrt(v_hat), so a gradient error of TOL_GRAD G (G = the network's
               largest sqrt(v_hat)) moves it by at most about lr 2 TOL_GRAD G / sqrt(v_hat).
               For parameters whose gradient has been ~0 so far (a fresh Adam's lr sign(g)
               with |g| at float32 noise) this allowance is large, and only m, v check them;
               everywhere else it is ~1e-3 lr or less.
  BRN stats    running mean/var, relative TOL_STAT; the pass counters exactly
  schedule     Adam counts exactly; CrossQ's `actor/updated`

Tolerances: our side is float32. With inputs and weights O(1), batch 16 and widths <= 32, a
float32 forward/backward pass is accurate to ~1e-6 relative (measured here: losses ~1e-7,
moments ~1e-6, parameters ~1e-7 after the step); the tolerances sit one to two orders of
magnitude above that and one or more below what each wrong variant changes.

Configs use larger learning rates (3e-3), Polyak rates (0.3), weight decay (0.1 for Simba) and
a temperature away from 1 (0.3) than the defaults, so that one step of each wrong variant
moves something by far more than the tolerance (e.g. with alpha = 1 the log-alpha form of the
temperature loss would have the same gradient; with tau = 0.005 a Polyak step from the old
critics would differ by only ~1e-5 lr). CrossQ uses a BRN warm-up of 2 passes, momentum 0.9,
r_max 1.5, d_max 0.5 and observations with spread-out means and scales, so that warm-up,
renormalisation and its clipping all happen within K = 7 updates (critic layers
renormalise from update 2, actor layers at the actor's third update, update 6).
"""

from __future__ import annotations

import functools
import math
import zlib

import jax
import numpy as np
import pytest

from agents import crossq, sac, simba
from agents.base import AgentSpec
from tests.reference import crossq as ref_crossq
from tests.reference import sac as ref_sac
from tests.reference import simba as ref_simba
from tests.reference.checks import (TOL_STAT, Case, Trajectory, _loss_ratio, _network_checks,
                                    _normals, _ref_adam, _worst, assert_k_block_matches,
                                    assert_variant_is_far,
                                    sac_family_checks as _sac_family_checks,
                                    sac_family_to_ref as _sac_family_to_ref,
                                    trajectory)
from tests.reference.common import Adam, f64

BATCH = 16
OBS, ACT = 5, 2
# per-feature observation scales and offsets: BRN's input layer sees clearly non-standard
# statistics (r and d hit their clips), the MLPs still see O(1) inputs
OBS_SCALE = np.array([0.3, 1.0, 2.5, 0.6, 1.5])
OBS_SHIFT = np.array([1.5, -1.0, 0.0, 0.5, -2.0])


def _spec(episodic: bool = True) -> AgentSpec:
    return AgentSpec(obs_dim=OBS, act_dim=ACT, discount=0.9, episodic=episodic,
                     total_updates=1000)


def _block(k: int, seed: int) -> dict:
    """k batches: obs/next_obs (k, B, O), action (k, B, A), reward (k, B), terminated (k, B)
    with at least two terminated and two live rows per batch."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(k, BATCH, OBS)) * OBS_SCALE + OBS_SHIFT
    next_obs = obs + 0.3 * rng.normal(size=obs.shape) * OBS_SCALE
    terminated = (rng.uniform(size=(k, BATCH)) < 0.3).astype(np.float32)
    terminated[:, :2], terminated[:, 2:4] = 1.0, 0.0
    return {"obs": obs.astype(np.float32), "next_obs": next_obs.astype(np.float32),
            "action": rng.uniform(-0.9, 0.9, (k, BATCH, ACT)).astype(np.float32),
            "reward": rng.normal(size=(k, BATCH)).astype(np.float32),
            "terminated": terminated}


# -- parameter layout converters (ours -> the reference's) -------------------------------------
# Each works on any tree with the parameters' structure (params, Adam mu and nu).

def _dense(p):
    return {"w": p["kernel"], "b": p["bias"]}


def _norm(p):
    return {"g": p["scale"], "b": p["bias"]}


def _heads(p):
    return [p[f"head_{h}"] for h in range(len(p))]


def _count(p, prefix):
    return sum(1 for k in p if k.startswith(prefix) and k[len(prefix):].isdigit())


def sac_actor(p):
    """Our predictor outputs [mean | log std] (2A columns) -> two heads."""
    k, b = p["predictor"]["kernel"], p["predictor"]["bias"]
    return {"hidden": [_dense(p[f"encoder_{i}"]) for i in range(_count(p, "encoder_"))],
            "mean": {"w": k[:, :ACT], "b": b[:ACT]},
            "log_std": {"w": k[:, ACT:], "b": b[ACT:]}}


def sac_critic(p):
    return [{"hidden": [_dense(h[f"encoder_{i}"]) for i in range(_count(h, "encoder_"))],
             "out": _dense(h["predictor"])} for h in _heads(p)]


def _simba_body(e):
    return {"embed": _dense(e["embedder"]),
            "blocks": [{"ln": _norm(e[f"block_{i}"]["norm"]),
                        "up": _dense(e[f"block_{i}"]["expand"]),
                        "down": _dense(e[f"block_{i}"]["contract"])}
                       for i in range(_count(e, "block_"))],
            "ln": _norm(e["final_norm"])}


def simba_actor(p):
    return {"body": _simba_body(p["encoder"]), "mean": _dense(p["predictor_mean"]),
            "log_std": _dense(p["predictor_std"])}


def simba_critic(p):
    return [{"body": _simba_body(h["encoder"]), "out": _dense(h["predictor"])}
            for h in _heads(p)]


def _brn_body(p):
    return {"norm_in": _norm(p["encoder_norm_in"]),
            "hidden": [{"dense": _dense(p[f"encoder_{i}"]), "norm": _norm(p[f"encoder_norm_{i}"])}
                       for i in range(_count(p, "encoder_"))]}


def crossq_actor(p):
    return {"body": _brn_body(p), "mean": _dense(p["predictor_mean"]),
            "log_std": _dense(p["predictor_log_std"])}


def crossq_critic(p):
    return [{"body": _brn_body(h), "out": _dense(h["predictor"])} for h in _heads(p)]


def crossq_stats(s):
    """Our batch_stats {"encoder_norm_in": {mean, var, steps}, "encoder_norm_i": ...}."""
    return {"norm_in": dict(s["encoder_norm_in"]),
            "hidden": [dict(s[f"encoder_norm_{i}"]) for i in range(_count(s, "encoder_norm_"))]}





def sac_case(cdq: str) -> Case:
    config = sac.Config(actor=sac.NetworkConfig(16, 2), critic=sac.NetworkConfig(16, 2),
                        batch_size=BATCH, lr=3e-3, tau=0.3, temperature_init=0.3, cdq=cdq)
    spec = _spec()
    ref_cfg = ref_sac.SACConfig(gamma=spec.discount, tau=config.tau, lr=config.lr,
                                target_entropy=-config.target_entropy_scale * ACT,
                                log_std_min=config.log_std_min, log_std_max=config.log_std_max)
    wrong = tuple(w for w in ref_sac.SAC_WRONG
                  if cdq == "on" or w not in ("target_max_over_heads", "actor_mean_over_heads"))
    adam = Adam(config.lr)
    return Case(f"sac-cdq_{cdq}", sac, config, spec, 3, ("next", "actor"),
                _sac_family_to_ref(sac_actor, sac_critic),
                lambda st, b, e, w: ref_sac.sac_step(ref_cfg, st, b, e, w),
                _sac_family_checks(sac_actor, sac_critic, lambda: (adam, adam, adam),
                                   config.tau), wrong)


def simba_case(cdq: str, temperature_decay: str) -> Case:
    config = simba.Config(actor=simba.NetworkConfig(8, 1), critic=simba.NetworkConfig(8, 1),
                          batch_size=BATCH, lr=3e-3, weight_decay=0.1, tau=0.3,
                          temperature_init=0.3, temperature_weight_decay=temperature_decay,
                          cdq=cdq)
    spec = _spec()
    ref_cfg = ref_simba.SimbaConfig(
        gamma=spec.discount, tau=config.tau, lr=config.lr, weight_decay=config.weight_decay,
        temperature_decay=temperature_decay == "on",
        target_entropy=-config.target_entropy_scale * ACT,
        log_std_min=config.log_std_min, log_std_max=config.log_std_max)
    wrong = tuple(w for w in ref_simba.SIMBA_WRONG
                  if cdq == "on" or w not in ("target_max_over_heads", "actor_mean_over_heads"))
    # the Adam objects only give LR and betas to the tolerance model
    adam = Adam(config.lr)
    return Case(f"simba-cdq_{cdq}-tempdecay_{temperature_decay}", simba, config, spec, 3,
                ("actor", "next"), _sac_family_to_ref(simba_actor, simba_critic),
                lambda st, b, e, w: ref_simba.simba_step(ref_cfg, st, b, e, w),
                _sac_family_checks(simba_actor, simba_critic, lambda: (adam, adam, adam),
                                   config.tau), wrong)


def _crossq_to_ref(s):
    return {"actor": f64(crossq_actor(s.actor.params)),
            "actor_stats": f64(crossq_stats(s.actor_stats)),
            "critic": f64(crossq_critic(s.critic.params)),
            "critic_stats": [f64(crossq_stats(h)) for h in _heads(s.critic_stats)],
            "log_alpha": f64(s.temperature.params), "step": int(s.step),
            "opt": {"actor": _ref_adam(s.actor.opt_state, crossq_actor),
                    "critic": _ref_adam(s.critic.opt_state, crossq_critic),
                    "temperature": _ref_adam(s.temperature.opt_state, lambda x: x)}}


def _stats_checks(name, ours, ref) -> dict:
    o, r = jax.tree_util.tree_flatten_with_path(ours)[0], jax.tree.leaves(ref)
    ratio, steps_ok = 0.0, True
    for (path, a), b in zip(o, r):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if getattr(path[-1], "key", None) == "steps":
            steps_ok &= bool(np.array_equal(a, b))
        else:
            ratio = max(ratio, float(np.max(np.abs(a - b) / (TOL_STAT * np.maximum(1, np.abs(b))))))
    return {f"{name}/running_stats": ratio, f"{name}/pass_counts": 0.0 if steps_ok else math.inf}


def crossq_case(cdq: str) -> Case:
    config = crossq.Config(actor=crossq.NetworkConfig(8, 2), critic=crossq.NetworkConfig(16, 2),
                           batch_size=BATCH, lr=3e-3, temperature_init=0.3, brn_momentum=0.9,
                           brn_warmup_steps=2, brn_r_max=1.5, brn_d_max=0.5, cdq=cdq)
    spec = _spec()
    ref_cfg = ref_crossq.CrossQConfig(
        gamma=spec.discount, lr=config.lr, b1=config.adam_b1, policy_delay=config.policy_delay,
        target_entropy=-config.target_entropy_scale * ACT, momentum=config.brn_momentum,
        warmup=config.brn_warmup_steps, r_max=config.brn_r_max, d_max=config.brn_d_max,
        epsilon=config.brn_epsilon, log_std_min=config.log_std_min,
        log_std_max=config.log_std_max)
    adam = Adam(config.lr, b1=config.adam_b1)

    def checks(s, metrics, ref, info):
        out = {"critic/loss": _loss_ratio(metrics["critic/loss"], info["critic/loss"]),
               "actor/updated": 0.0 if bool(metrics["actor/updated"]) == info["actor_updated"]
               else math.inf}
        if info["actor_updated"]:
            out.update({k: _loss_ratio(metrics[k], info[k])
                        for k in ("actor/loss", "temperature/loss")})
        for name, ts, conv in (("actor", s.actor, crossq_actor),
                               ("critic", s.critic, crossq_critic)):
            out.update(_network_checks(name, ts.params, ts.opt_state, conv, ref[name],
                                       ref["opt"][name], adam)[0])
        out.update(_network_checks("log_alpha", s.temperature.params, s.temperature.opt_state,
                                   lambda x: x, ref["log_alpha"], ref["opt"]["temperature"],
                                   adam)[0])
        out.update(_stats_checks("actor", crossq_stats(s.actor_stats), ref["actor_stats"]))
        out.update(_stats_checks("critic", [crossq_stats(h) for h in _heads(s.critic_stats)],
                                 ref["critic_stats"]))
        out["step"] = 0.0 if int(s.step) == ref["step"] else math.inf
        return out

    wrong = tuple(w for w in ref_crossq.CROSSQ_WRONG
                  if cdq == "on" or w not in ("target_max_over_heads", "actor_mean_over_heads"))
    return Case(f"crossq-cdq_{cdq}", crossq, config, spec, 7, ("next", "actor"), _crossq_to_ref,
                lambda st, b, e, w: ref_crossq.crossq_step(ref_cfg, st, b, e, w), checks, wrong)


CASES = {c.name: c for c in (sac_case("on"), sac_case("off"),
                             simba_case("on", "on"), simba_case("off", "off"),
                             crossq_case("on"), crossq_case("off"))}


# -- running ours and the reference ---------------------------------------------------------------

@functools.cache
def ours(name: str) -> Trajectory:
    case = CASES[name]
    return trajectory(case, _block(case.steps, seed=zlib.crc32(name.encode()) % 1000))


def reference_step(case: Case, state, batch, wrong: str | None):
    """The reference's one step from our numpy state -> (reference state, info)."""
    eps = _normals(state.key, (BATCH, ACT), case.noise_order)
    with jax.enable_x64(True):
        return case.ref_step(case.to_ref(state), f64(batch), f64(eps), wrong)


def step_ratios(case: Case, traj: Trajectory, t: int, wrong: str | None = None) -> dict:
    """{check: error / tolerance} of update t (ours from state t vs the reference)."""
    ref, info = reference_step(case, traj.states[t], traj.batches[t], wrong)
    return case.checks(traj.states[t + 1], traj.metrics[t], ref, info)


# -- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_update_matches_reference(name):
    case = CASES[name]
    traj = ours(name)
    for t in range(case.steps):
        ratios = step_ratios(case, traj, t)
        assert max(ratios.values()) <= 1.0, f"update {t}: {_worst(ratios)}"


@pytest.mark.parametrize("name", list(CASES))
def test_k_block_update_matches_reference(name):
    """One `update` on the whole K-block (the lax.scan path) ends where the reference's step
    from our state K - 1 does; its metrics are the mean over the K updates."""
    case = CASES[name]
    traj = ours(name)
    ref, info = reference_step(case, traj.states[-2], traj.batches[-1], None)
    assert_k_block_matches(case, traj, ref, info, block_metrics=("actor/updated",))


VARIANTS = [(name, w) for name, case in CASES.items() for w in case.wrong]


@pytest.mark.parametrize("name,wrong", VARIANTS, ids=[f"{n}-{w}" for n, w in VARIANTS])
def test_wrong_variant_is_far(name, wrong):
    """Each deliberate mistake in the reference moves some compared quantity by >= FAR times
    its tolerance at some update, so the comparison above would catch it in our code. Stops at
    the first update that shows it (deterministic: same inputs every run)."""
    case = CASES[name]
    traj = ours(name)
    assert_variant_is_far(case, lambda t: step_ratios(case, traj, t, wrong), wrong)


def test_setup_exercises_what_it_claims():
    """Terminated rows, CrossQ's actor schedule (updates 0, 3, 6) and BRN warm-up crossing
    (critic layers past their 2 warm-up passes, the actor's at update 6) in our runs."""
    for name in CASES:
        for b in ours(name).batches:
            assert 0 < b["terminated"].sum() < BATCH
    traj = ours("crossq-cdq_on")
    assert [float(m["actor/updated"]) for m in traj.metrics] == [1, 0, 0, 1, 0, 0, 1]
    assert int(traj.states[-1].critic_stats["head_0"]["encoder_norm_0"]["steps"]) == 7
    assert int(traj.states[-1].actor_stats["encoder_norm_0"]["steps"]) == 3
