"""SimbaV2 maths against docs/simbav2.md: sphere constraints, parameter counts, analytic norms, C51
projection, CDQ target, reward scaling, and the fused k-update scan."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import distributional as dist
from agents import simbav2 as sv
from agents.base import AgentSpec
from agents.layers import PROJECTED
from agents.networks import CategoricalCritic, SimbaV2Actor
from agents.normalization import ObservationNormalizer, RewardScaler, RunningMeanStd

SMALL = sv.Config(actor=sv.NetworkConfig(32, 1), critic=sv.NetworkConfig(64, 2), batch_size=32)


def _spec(obs=7, act=3, episodic=False):
    return AgentSpec(obs_dim=obs, act_dim=act, discount=0.99, episodic=episodic,
                     total_updates=100)


def _block(spec, k, batch, seed=0, terminal_every=5):
    rng = np.random.default_rng(seed)
    return {"obs": rng.normal(size=(k, batch, spec.obs_dim)).astype(np.float32),
            "action": rng.uniform(-1, 1, (k, batch, spec.act_dim)).astype(np.float32),
            "reward": rng.normal(size=(k, batch)).astype(np.float32),
            "next_obs": rng.normal(size=(k, batch, spec.obs_dim)).astype(np.float32),
            "terminated": (rng.integers(0, terminal_every, (k, batch)) == 0).astype(np.float32)}


def _kernels(params):
    return [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
            if getattr(path[-1], "key", None) == PROJECTED]


def _assert_unit_columns(params, tol=1e-5):
    kernels = _kernels(params)
    assert kernels
    for w in kernels:
        np.testing.assert_allclose(np.linalg.norm(np.asarray(w), axis=-2), 1.0, atol=tol)


@pytest.mark.parametrize("episodic", [False, True])
def test_kernels_stay_on_the_sphere_and_features_are_unit_norm(episodic):
    spec = _spec(episodic=episodic)
    agent = sv.init(SMALL, spec, seed=0)
    _assert_unit_columns(agent.actor.params)
    _assert_unit_columns(agent.critic.params)
    _assert_unit_columns(agent.target)
    n_kernels = len(_kernels(agent.critic.params))
    assert n_kernels == (2 if episodic else 1) * (1 + 2 * 2 + 2)  # embed, 2 per block, head
    for i in range(3):
        agent, metrics = sv.update(agent, _block(spec, 2, 32, seed=i))
    assert int(agent.step) == 6 and bool(metrics["health/finite"])
    _assert_unit_columns(agent.actor.params)
    _assert_unit_columns(agent.critic.params)
    # The target is an EMA of unit vectors and is deliberately not re-projected.
    target_norms = np.concatenate([np.linalg.norm(np.asarray(w), axis=-2).ravel()
                                   for w in _kernels(agent.target)])
    assert target_norms.max() <= 1.0 + 1e-6 and target_norms.min() < 1.0 - 1e-9
    # Embeddings and block outputs lie on the sphere, for actor and critic, per sample.
    s = sv._static(SMALL, spec)
    obs = jnp.asarray(np.random.default_rng(1).normal(size=(16, spec.obs_dim)) * 50,
                      jnp.float32)
    _, _, feats = s.actor.apply({"params": agent.actor.params}, obs)
    _, cfeats = s.critic.apply({"params": agent.critic.params}, obs, jnp.zeros((16, 3)))
    for f in (feats, cfeats):
        for name in ("input", "embedding", "block_0"):
            np.testing.assert_allclose(np.linalg.norm(np.asarray(f[name]), axis=-1), 1.0,
                                       atol=1e-5)
    m = sv.stability_metrics(agent, jax.tree.map(lambda x: x[0], _block(spec, 1, 32)))
    assert float(m["critic/encoder/featnorm"]) == pytest.approx(1.0, abs=1e-5)


def _count(params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("width,expect_m", [(128, 0.30), (256, 1.17), (512, 4.56), (1024, 18.0)])
def test_critic_parameter_counts(width, expect_m):
    # docs/simbav2.md (parameter counts) with 90 inputs (observation + action + the shift constant)
    critic = CategoricalCritic(1, width, 2, 101, 3.0, "paper")
    shapes = jax.eval_shape(critic.init, jax.random.PRNGKey(0), jnp.zeros((1, 68)),
                            jnp.zeros((1, 21)))["params"]["head_0"]
    d = width
    embed = 90 * d + d
    block = d * 4 * d + 4 * d + 4 * d * d + d
    head = d * d + d + d * 101 + 101
    assert _count(shapes["encoder"]) == embed + 2 * block
    assert _count(shapes["predictor"]) == head
    if width == 512:
        assert block == 2_099_712
    assert _count(shapes) / 1e6 == pytest.approx(expect_m, rel=0.03)
    cdq = CategoricalCritic(2, width, 2, 101, 3.0, "paper")
    assert _count(jax.eval_shape(cdq.init, jax.random.PRNGKey(0), jnp.zeros((1, 68)),
                                 jnp.zeros((1, 21)))) == 2 * _count(shapes)


def test_actor_parameter_count_is_about_0_2m():
    actor = SimbaV2Actor(21, 128, 1, 3.0, "paper")
    n = _count(jax.eval_shape(actor.init, jax.random.PRNGKey(0), jnp.zeros((1, 67))))
    assert 0.15e6 < n < 0.25e6


def _analytic_effective_pnorms(d: int, n_in: int, depth: int, atoms: int, scheme: str):
    """Count-weighted RMS of per-leaf norms of a fresh critic: every projected kernel has
    ||W||^2 = its number of output units; scalers hold `scale`; biases are zero."""
    embed_s, block_s = {"paper": (1.0, 1 / math.sqrt(d)),
                        "release": (math.sqrt(2 / d), math.sqrt(2 / d) / 2)}[scheme]
    # (n_l, ||theta_l||^2) per leaf
    enc = [(n_in * d, d), (d, d * embed_s**2)]
    for _ in range(depth):
        enc += [(d * 4 * d, 4 * d), (4 * d, 4 * d * block_s**2), (4 * d * d, d),
                (d, d * (1 / math.sqrt(d))**2)]
    head = [(d * d, d), (d, d * 1.0), (d * atoms, atoms), (atoms, 0.0)]

    def eff(leaves):
        return math.sqrt(sum(n * s for n, s in leaves) / sum(n for n, _ in leaves))

    return eff(enc), eff(head)


@pytest.mark.parametrize("scheme", ["paper", "release"])
def test_effective_parameter_norm_of_a_fresh_width_512_critic(scheme):
    cfg = sv.Config(scaler_init=scheme, actor=sv.NetworkConfig(32, 1))
    spec = AgentSpec(obs_dim=67, act_dim=22, discount=0.99, episodic=False, total_updates=10)
    agent = sv.init(cfg, spec, seed=0)
    m = sv.stability_metrics(agent, jax.tree.map(lambda x: x[0], _block(spec, 1, 8)))
    enc, head = _analytic_effective_pnorms(512, 90, 2, 101, scheme)
    assert enc == pytest.approx(35.8, abs=0.25) and head == pytest.approx(21.08, abs=0.02)
    assert float(m["critic/encoder/effective_pnorm"]) == pytest.approx(enc, rel=1e-4)
    assert float(m["critic/predictor/effective_pnorm"]) == pytest.approx(head, rel=1e-4)
    assert 0 < float(m["critic/encoder/effective_lr"]) < 1


def test_cdq_critic_metrics_count_both_heads_stacked():
    spec = AgentSpec(obs_dim=10, act_dim=3, discount=0.99, episodic=True, total_updates=10)
    cfg = sv.Config(actor=sv.NetworkConfig(32, 1), critic=sv.NetworkConfig(128, 2))
    agent = sv.init(cfg, spec, seed=0)
    m = sv.stability_metrics(agent, jax.tree.map(lambda x: x[0], _block(spec, 1, 8)))
    enc, head = _analytic_effective_pnorms(128, 14, 2, 101, "paper")
    # stacking the two heads doubles every leaf's size and squared norm: x sqrt(2)
    assert float(m["critic/encoder/effective_pnorm"]) == pytest.approx(enc * math.sqrt(2),
                                                                       rel=1e-4)
    assert float(m["critic/predictor/effective_pnorm"]) == pytest.approx(head * math.sqrt(2),
                                                                         rel=1e-4)


def _project_reference(target_atoms, probs, v_min, v_max):
    """The official floor/ceil formulation, in float64 numpy."""
    b_sz, n = probs.shape
    delta = (v_max - v_min) / (n - 1)
    b = (np.clip(target_atoms, v_min, v_max) - v_min) / delta
    lo, up = np.floor(b).astype(int), np.ceil(b).astype(int)
    out = np.zeros((b_sz, n))
    for r in range(b_sz):
        for i in range(n):
            out[r, lo[r, i]] += probs[r, i] * (up[r, i] - b[r, i] + (lo[r, i] == up[r, i]))
            out[r, up[r, i]] += probs[r, i] * (b[r, i] - lo[r, i])
    return out


PROJECTION_METHODS = ("scatter", "dense")


@pytest.mark.parametrize("method", PROJECTION_METHODS)
def test_categorical_projection_hand_cases(method):
    atoms = dist.support(5, -2.0, 2.0)  # -2 -1 0 1 2
    # an atom exactly on a support point keeps all its mass there (the top one included)
    p = dist.project(jnp.asarray([[1.0, -2.0, 0.0, 1.0, 2.0]]),
                     jnp.asarray([[0.1, 0.2, 0.3, 0.15, 0.25]]), -2.0, 2.0, method)
    np.testing.assert_allclose(p, [[0.2, 0.0, 0.3, 0.25, 0.25]], atol=1e-7)
    # halfway between -1 and 0: split evenly; 0.25 of the way from 1 to 2: 0.75 / 0.25
    p = dist.project(jnp.asarray([[-0.5, 1.25, 9.0, -9.0, 0.0]]),
                     jnp.asarray([[0.4, 0.4, 0.1, 0.1, 0.0]]), -2.0, 2.0, method)
    np.testing.assert_allclose(p, [[0.1, 0.2, 0.2, 0.3, 0.1 + 0.1]], atol=1e-7)
    # terminal transition: every atom collapses onto the reward
    reward, discount, terminated = 0.35, 0.99, 1.0
    target = reward + discount * (1 - terminated) * (atoms - 0.5)
    probs = jnp.full((1, 5), 0.2)
    np.testing.assert_allclose(dist.project(target[None], probs, -2.0, 2.0, method),
                               [[0, 0, 0.65, 0.35, 0]], atol=1e-6)


def test_categorical_projection_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="valid: scatter, dense"):
        dist.project(jnp.zeros((1, 3)), jnp.ones((1, 3)) / 3, -1.0, 1.0, "hat")


@pytest.mark.parametrize("method", PROJECTION_METHODS)
def test_categorical_projection_matches_the_official_formula(method):
    rng = np.random.default_rng(0)
    n, g = 101, 5.0
    atoms = np.asarray(dist.support(n, -g, g), np.float64)
    reward = rng.normal(size=(64, 1)) * 2
    reward[:4] = np.round(reward[:4] * 10) / 10  # exact hits on support points too
    logp = rng.normal(size=(64, 1))
    target_atoms = reward + 0.99 * (atoms[None] - 0.05 * logp)
    target_atoms[-3:] = reward[-3:]  # terminals
    probs = rng.dirichlet(np.ones(n), size=64)
    ours = np.asarray(dist.project(jnp.asarray(target_atoms, jnp.float32),
                                   jnp.asarray(probs, jnp.float32), -g, g, method))
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, _project_reference(target_atoms, probs, -g, g), atol=2e-5)


def test_cdq_target_takes_the_head_with_the_smaller_mean_per_sample():
    atoms = dist.support(3, -1.0, 1.0)
    head0 = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])   # means -1, +1
    head1 = jnp.asarray([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])   # means 0, 0
    chosen = dist.min_head(jnp.stack([head0, head1]), atoms)
    np.testing.assert_array_equal(chosen, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(dist.min_head(head0[None], atoms), head0)


def test_cross_entropy_sums_heads_and_averages_batch():
    logits = jnp.zeros((2, 4, 3))
    target = jnp.asarray([[1.0, 0, 0]] * 4)
    assert float(dist.cross_entropy(logits, target)) == pytest.approx(2 * math.log(3))


def test_reward_scaling_bounds_the_scaled_return_and_keeps_float64():
    rng = np.random.default_rng(0)
    for reset_on in ("terminated", "done"):
        scaler = RewardScaler(discount=0.99, g_max=5.0, reset_on=reset_on)
        for t in range(3000):
            r = rng.normal() * 100 + (500 if t % 700 == 0 else 0)
            scaler.update(r, terminated=(t % 997 == 996), truncated=(t % 400 == 399))
            assert abs(scaler.G / scaler.scale) <= 5.0 + 1e-9
        assert scaler.stats.var.dtype == np.float64 and scaler.stats.mean.dtype == np.float64
    with pytest.raises(ValueError, match="terminated, done"):
        RewardScaler(0.99, 5.0, "never")


def test_g_resets_on_the_transitions_own_flag():
    s = RewardScaler(discount=0.5, g_max=5.0, reset_on="terminated")
    for r, term, trunc in [(1, False, False), (1, False, True), (2, True, False), (4, False, False)]:
        s.update(r, term, trunc)
    assert s.G == pytest.approx(0.5 * 2 + 4)  # truncation ignored, terminal restarts G at r
    s = RewardScaler(discount=0.5, g_max=5.0, reset_on="done")
    for r, term, trunc in [(1, False, False), (3, False, True), (4, False, False)]:
        s.update(r, term, trunc)
    assert s.G == pytest.approx(0.5 * 3 + 4)


def test_running_statistics_match_the_closed_form_in_float64():
    # Data far from the prior (mean 0, var 1, count 1e-4): the prior's pull is part of the
    # official statistics, so compare with the closed form of prior + data.
    x = np.random.default_rng(0).normal(loc=1e4, scale=1e-2, size=(500, 3))
    n, c0 = len(x), 1e-4
    mean = x.sum(0) / (n + c0)
    var = (c0 * 1.0 + n * x.var(0) + x.mean(0) ** 2 * c0 * n / (n + c0)) / (n + c0)
    one, batched = ObservationNormalizer((3,)), RunningMeanStd((3,))
    for row in x:
        one.update_one(row)
    batched.update(x[:200])
    batched.update(x[200:])
    for s in (one, batched):
        assert s.mean.dtype == np.float64 and s.var.dtype == np.float64
        np.testing.assert_allclose(s.mean, mean, rtol=1e-13)
        np.testing.assert_allclose(s.var, var, rtol=1e-7)
    y = np.random.default_rng(1).normal(loc=5.0, scale=2.0, size=(4000, 3))
    norm = ObservationNormalizer((3,))
    norm.update(y)
    z = norm.normalize(y)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-3)


def test_scan_of_k_updates_equals_k_single_updates_and_compiles_once():
    spec = _spec(episodic=True)
    block = _block(spec, 3, 32, seed=4)
    fused, m3 = sv.update(sv.init(SMALL, spec, seed=1), block)
    single = sv.init(SMALL, spec, seed=1)
    singles = []
    for i in range(3):
        single, m = sv.update(single, jax.tree.map(lambda x: x[i:i + 1], block))
        singles.append(m)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(single)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(float(m3["critic/loss"]),
                               np.mean([float(m["critic/loss"]) for m in singles]), rtol=1e-5)
    # new data, same shapes: no retrace
    before = sv.update._cache_size()
    agent = fused
    for i in range(4):
        agent, _ = sv.update(agent, _block(spec, 3, 32, seed=10 + i))
    assert sv.update._cache_size() == before


def test_actor_log_std_range_and_deterministic_action():
    spec = _spec()
    agent = sv.init(SMALL, spec, seed=0)
    s = sv._static(SMALL, spec)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, spec.obs_dim)) * 100,
                      jnp.float32)
    mean, log_std, _ = s.actor.apply({"params": agent.actor.params}, obs)
    assert float(log_std.min()) > -10 and float(log_std.max()) < 2
    np.testing.assert_allclose(sv.act(agent, obs, jax.random.PRNGKey(0), deterministic=True),
                               np.tanh(mean), atol=1e-6)
    a = sv.act(agent, obs, jax.random.PRNGKey(0))
    assert a.shape == (64, spec.act_dim) and float(jnp.abs(a).max()) <= 1.0


def test_config_utd_conventions_and_bad_values():
    assert sv.Config().frame_update_rate == 1.0          # paper default: UTD 2
    assert sv.Config(utd=8).frame_update_rate == 4.0     # paper's UTD 8
    assert sv.Config(updates_per_frame=0.5).frame_update_rate == 0.5
    with pytest.raises(ValueError, match="disagree"):
        sv.Config(utd=2, updates_per_frame=2.0)
    with pytest.raises(ValueError, match="paper, release"):
        sv.Config(scaler_init="nope")
    assert sv.Config(cdq="auto").num_heads(_spec(episodic=True)) == 2
    assert sv.Config(cdq="off").num_heads(_spec(episodic=True)) == 1
