"""Our jitted SimbaV2 update against an independent float64 reference of one gradient step
(tests/reference/simbav2.py, written from the SimbaV2 maths in docs/simbav2.md, not from
agents/): losses, gradients (Adam moments), the update order actor -> temperature -> critic
(target from the NEW actor and the NEW temperature) -> Polyak, the sphere projection after
each Adam step, the categorical projection, clipped double-Q on distributions, the linear LR
schedule; and the float64 host statistics (observation RSNorm, reward scaling).

The comparison is the one of tests/test_reference_baselines.py (its docstring explains the
teacher forcing and the tolerances): for every update t the reference steps from OUR state t
(converted exactly to float64, with the Gaussian noise our update draws from its key) and must
land on our state t + 1 and our metrics of update t; one whole K-block `update` (the lax.scan)
must end where the reference's step from our state K - 1 does. Every wrong variant of the
reference (old actor or old temperature in the target, online critic as target, max / mean /
batch-wide CDQ, critic-first order, Polyak first, a missing projection, ...) must land >= FAR
times the tolerance away at some update, which shows the comparison would catch that mistake
in our code.

The config is tiny (actor 8 x 1 block, critic 8 x 2 blocks, 11 atoms, batch 16) with a large
LR (3e-3 falling linearly to 1e-3 by update 3, so the schedule's end is inside the K = 4
updates), tau 0.3 and alpha 0.3, so one step of each mistake is visible; rewards (already
"scaled") are spread enough that shifted atoms are clipped at +-g_max.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from agents import simbav2
from agents.base import AgentSpec
from agents.normalization import ObservationNormalizer, RewardScaler
from tests.reference import simbav2 as ref
from tests.reference.checks import (Case, _loss_ratio, _normals, _worst,
                                    assert_k_block_matches, assert_variant_is_far,
                                    sac_family_checks, sac_family_to_ref, trajectory)
from tests.reference.common import Adam, f64

BATCH, OBS, ACT, STEPS = 16, 5, 2, 4
LR_INIT, LR_END, SCHEDULE = 3e-3, 1e-3, 3     # linear over 3 updates; update 3 runs at LR_END
TAU, ALPHA0, GAMMA, ATOMS = 0.3, 0.3, 0.9, 11


def _block(k: int, seed: int) -> dict:
    """k batches of normalised observations, actions in (-0.9, 0.9), scaled rewards (sd 2.5:
    some shifted atoms leave [-5, 5]) and terminated flags (>= 2 of each kind per batch)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(k, BATCH, OBS))
    terminated = (rng.uniform(size=(k, BATCH)) < 0.3).astype(np.float32)
    terminated[:, :2], terminated[:, 2:4] = 1.0, 0.0
    return {"obs": obs.astype(np.float32),
            "next_obs": (obs + 0.3 * rng.normal(size=obs.shape)).astype(np.float32),
            "action": rng.uniform(-0.9, 0.9, (k, BATCH, ACT)).astype(np.float32),
            "reward": (2.5 * rng.normal(size=(k, BATCH))).astype(np.float32),
            "terminated": terminated}


# -- our parameter layout -> the reference's (works on params and on Adam's mu / nu) -------------

def _kernel(p):
    return p["hyper_kernel"]


def _body(p):
    e = p["Embedder_0"]
    blocks = [p[f"block_{i}"] for i in range(sum(k.startswith("block_") for k in p))]
    return {"embed": {"W": _kernel(e["HyperDense_0"]), "s": e["Scaler_0"]["scaler"]},
            "blocks": [{"W1": _kernel(b["HyperDense_0"]), "s1": b["Scaler_0"]["scaler"],
                        "W2": _kernel(b["HyperDense_1"]), "alpha": b["Scaler_1"]["scaler"]}
                       for b in blocks]}


def _head(p):
    return {"W1": _kernel(p["HyperDense_0"]), "s": p["Scaler_0"]["scaler"],
            "W2": _kernel(p["HyperDense_1"]), "b": p["bias"]}


def actor_conv(p):
    return {"body": _body(p["encoder"]), "mean": _head(p["predictor_mean"]),
            "std": _head(p["predictor_std"])}


def critic_conv(p):
    return [{"body": _body(p[f"head_{h}"]["encoder"]), "head": _head(p[f"head_{h}"]["predictor"])}
            for h in range(len(p))]


# -- the cases ---------------------------------------------------------------------------------

ADAM = Adam(LR_INIT, LR_END, steps=SCHEDULE)
EXTRA = ("critic/q_mean", "critic/target_q_mean", "temperature/value", "actor/entropy")


def simbav2_case(cdq: str, scheme: str = "paper") -> Case:
    config = simbav2.Config(actor=simbav2.NetworkConfig(8, 1),
                            critic=simbav2.NetworkConfig(8, 2), num_atoms=ATOMS,
                            batch_size=BATCH, lr_init=LR_INIT, lr_end=LR_END, tau=TAU,
                            temperature_init=ALPHA0, cdq=cdq, scaler_init=scheme)
    spec = AgentSpec(obs_dim=OBS, act_dim=ACT, discount=GAMMA, episodic=True,
                     total_updates=SCHEDULE)
    hp = ref.Hyper(gamma=GAMMA, tau=TAU, num_atoms=ATOMS,
                   target_entropy=-config.target_entropy_scale * ACT, adam=ADAM,
                   g_max=config.g_max, c_shift=config.c_shift, scheme=scheme)

    def ref_step(state, batch, eps, wrong):
        new, metrics, diag = ref.update_step(state, batch, eps["actor"], eps["next"], hp, wrong)
        return new, dict(metrics, diag=jax.tree.map(np.asarray, diag))

    base = sac_family_checks(actor_conv, critic_conv, lambda: (ADAM, ADAM, ADAM), TAU)

    def checks(s, metrics, ref_state, info):
        out = base(s, metrics, ref_state, info)
        out.update({k: _loss_ratio(metrics[k], info[k]) for k in EXTRA})
        return out

    wrong = tuple(v for v in ref.VARIANTS if cdq == "on" or v not in ref.CDQ_ONLY)
    return Case(f"simbav2-cdq_{cdq}-{scheme}", simbav2, config, spec, STEPS, ("actor", "next"),
                sac_family_to_ref(actor_conv, critic_conv), ref_step, checks,
                wrong if scheme == "paper" else ())


CASES = {c.name: c for c in (simbav2_case("off"), simbav2_case("on"),
                             simbav2_case("on", "release"))}


@functools.cache
def ours(name: str):
    return trajectory(CASES[name], _block(STEPS, seed=11))


def reference_step(case: Case, state, batch, wrong: str | None = None):
    eps = _normals(state.key, (BATCH, ACT), case.noise_order)
    with jax.enable_x64(True):
        return case.ref_step(case.to_ref(state), f64(batch), f64(eps), wrong)


def step_ratios(case: Case, t: int, wrong: str | None = None) -> dict:
    traj = ours(case.name)
    ref_state, info = reference_step(case, traj.states[t], traj.batches[t], wrong)
    return case.checks(traj.states[t + 1], traj.metrics[t], ref_state, info)


# -- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_update_matches_reference(name):
    case = CASES[name]
    for t in range(case.steps):
        ratios = step_ratios(case, t)
        assert max(ratios.values()) <= 1.0, f"update {t}: {_worst(ratios)}"


@pytest.mark.parametrize("name", list(CASES))
def test_k_block_update_matches_reference(name):
    """One `update` on the whole K-block (the lax.scan path) ends where the reference's step
    from our state K - 1 does, and its metrics are the mean of the single updates'."""
    case, traj = CASES[name], ours(name)
    ref_state, info = reference_step(case, traj.states[-2], traj.batches[-1])
    assert_k_block_matches(case, traj, ref_state, info, block_metrics=EXTRA)


VARIANTS = [(name, w) for name, case in CASES.items() for w in case.wrong]


@pytest.mark.parametrize("name,wrong", VARIANTS, ids=[f"{n}-{w}" for n, w in VARIANTS])
def test_wrong_variant_is_far(name, wrong):
    """Each deliberate mistake moves something compared by >= FAR x its tolerance at some
    update (stops at the first one that shows it)."""
    case = CASES[name]
    assert_variant_is_far(case, lambda t: step_ratios(case, t, wrong), wrong)


def test_setup_exercises_what_it_claims():
    """The inputs reach what the comparison claims to cover, and stay clear of the few places
    where float32 and float64 could legitimately disagree."""
    case = CASES["simbav2-cdq_on-paper"]
    traj = ours(case.name)
    clipped = 0
    for t, batch in enumerate(traj.batches):
        assert 0 < batch["terminated"].sum() < BATCH
        _, info = reference_step(case, traj.states[t], batch)
        diag = info["diag"]
        # the two target heads' expected values are never within float32 noise of a tie, so
        # both sides pick the same head per sample
        assert float(np.min(diag["head_gap"])) > 1e-4
        # pre-tanh actions stay where float32's log(1 - tanh^2) is accurate
        assert float(np.max(np.abs(diag["u_next"]))) < 6
        assert float(np.max(np.abs(diag["u_actor"]))) < 6
        clipped += int(np.sum(np.abs(batch["reward"]) > 5.0))
    assert clipped > 0, "no reward beyond g_max: the projection's clip is not exercised"
    # the LR schedule reaches its end inside the block (the last update runs at LR_END)
    assert ADAM.lr(STEPS - 1) == LR_END and ADAM.lr(0) == LR_INIT
    # our kernels are on the sphere after each step (what the reference projects)
    for leaf in jax.tree.leaves(actor_conv(traj.states[-1].actor.params)["body"]["blocks"][0]["W1"]):
        np.testing.assert_allclose(np.linalg.norm(leaf, axis=0), 1.0, atol=1e-5)


# -- host statistics in float64 ------------------------------------------------------------------

def test_reward_scaler_matches_reference():
    """RewardScaler (reset on `terminated`, the transition's own flag) against the reference's
    sigma_G over a stream with terminations and truncations (a truncation must NOT restart G
    under the paper's rule). Both are float64: agreement to 1e-12 relative."""
    rng = np.random.default_rng(3)
    n = 400
    rewards = rng.normal(1.0, 2.0, n)
    terminated = rng.uniform(size=n) < 0.02
    truncated = np.zeros(n, bool)
    truncated[99::100] = True
    expect = ref.reward_scales(rewards, terminated, GAMMA, 5.0)
    scaler = RewardScaler(GAMMA, 5.0, "terminated")
    got = []
    for r, term, trunc in zip(rewards, terminated, truncated):
        scaler.update(r, bool(term), bool(trunc))
        got.append(scaler.scale)
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    # the release rule (`done`) restarts G on truncation too: it differs from the reference
    release = RewardScaler(GAMMA, 5.0, "done")
    for r, term, trunc in zip(rewards, terminated, truncated):
        release.update(r, bool(term), bool(trunc))
    assert abs(release.scale - expect[-1]) > 1e-6 * expect[-1]


def test_observation_normalizer_matches_reference():
    """RSNorm updated one observation at a time and in batches equals the reference's
    parallel merge; normalised observations equal (x - mean) / sqrt(var + 1e-8)."""
    rng = np.random.default_rng(4)
    xs = rng.normal(3.0, [0.1, 1.0, 20.0], size=(300, 3))
    stats, norm = ref.rsnorm_init((3,)), ObservationNormalizer((3,))
    for x in xs[:100]:
        stats = ref.rsnorm_update(stats, x[None])
        norm.update_one(x)
    for chunk in np.split(xs[100:], 4):
        stats = ref.rsnorm_update(stats, chunk)
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean, stats["mean"], rtol=1e-12)
    np.testing.assert_allclose(norm.var, stats["var"], rtol=1e-12)
    assert norm.count == pytest.approx(stats["count"], rel=1e-15)
    np.testing.assert_allclose(norm.normalize(xs), ref.rsnorm_normalize(stats, xs), rtol=1e-6,
                               atol=1e-6)
