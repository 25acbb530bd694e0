"""Simba (v1) agent: config, architecture (by hand), AdamW, the update order against a manual
computation, the fused k-update scan, and a short finite training run with stability metrics."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agents import base
from agents import simba as sb
from agents.base import AgentSpec
from agents.normalization import ObservationNormalizer
from agents.train_state import apply_gradients

SMALL = sb.Config(actor=sb.NetworkConfig(16, 1), critic=sb.NetworkConfig(32, 2), batch_size=16)


def _spec(obs=7, act=3, episodic=True):
    return AgentSpec(obs_dim=obs, act_dim=act, discount=0.99, episodic=episodic,
                     total_updates=100)


def _block(spec, k, batch, seed=0, terminal_every=5, reward_scale=1.0):
    rng = np.random.default_rng(seed)
    return {"obs": rng.normal(size=(k, batch, spec.obs_dim)).astype(np.float32),
            "action": rng.uniform(-1, 1, (k, batch, spec.act_dim)).astype(np.float32),
            "reward": (reward_scale * rng.normal(size=(k, batch))).astype(np.float32),
            "next_obs": rng.normal(size=(k, batch, spec.obs_dim)).astype(np.float32),
            "terminated": (rng.integers(0, terminal_every, (k, batch)) == 0).astype(np.float32)}


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _assert_trees_close(a, b, rtol, atol):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# -- config -----------------------------------------------------------------------------------

def test_config_defaults_and_bad_values():
    c = sb.Config()
    assert (c.actor.width, c.actor.depth, c.critic.width, c.critic.depth) == (128, 1, 512, 2)
    assert c.batch_size == 256 and c.frame_update_rate == 1.0   # the paper's UTD 2
    assert sb.Config(utd=8).frame_update_rate == 4.0
    assert (c.lr, c.weight_decay, c.tau, c.temperature_init) == (1e-4, 1e-2, 0.005, 0.01)
    assert c.target_entropy_scale == 0.5 and (c.log_std_min, c.log_std_max) == (-10.0, 2.0)
    assert c.temperature_weight_decay == "on" and c.temperature_decay == 1e-2
    assert sb.Config(temperature_weight_decay="off").temperature_decay == 0.0
    assert c.cdq == "auto"
    assert c.num_heads(_spec(episodic=True)) == 2 and c.num_heads(_spec(episodic=False)) == 1
    assert sb.Config(cdq="on").num_heads(_spec(episodic=False)) == 2
    assert sb.Config(cdq="off").num_heads(_spec(episodic=True)) == 1
    assert c.size() == {"actor.width": 128, "actor.depth": 1, "critic.width": 512,
                        "critic.depth": 2, "width": 512, "depth": 2}
    assert sb._static(c, _spec(act=6)).target_entropy == -3.0
    with pytest.raises(ValueError, match="auto, on, off"):
        sb.Config(cdq="maybe")
    with pytest.raises(ValueError, match="on, off"):
        sb.Config(temperature_weight_decay="0.01")
    with pytest.raises(ValueError, match="depth"):
        sb.Config(critic=sb.NetworkConfig(64, 0))
    # every setting has a help line, and the registry loads the agent
    assert all(h for _, _, h in base.config_help(c))
    assert base.load_agent("simba") is sb


def test_normalizers_observations_only():
    spec = _spec(obs=5)
    obs, rew = sb.normalizers(SMALL, spec)
    assert isinstance(obs, ObservationNormalizer) and rew is None
    assert obs.mean.shape == (5,)
    assert base.normalizers(sb, SMALL, spec)[1] is None


# -- architecture -----------------------------------------------------------------------------

def _encoder_count(n_in, d, depth):
    block = 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)   # LayerNorm, expand, contract
    return (n_in * d + d) + depth * block + 2 * d           # embedding, blocks, final LN


def test_parameter_groups_and_counts_by_hand():
    spec = _spec(obs=7, act=3, episodic=True)
    agent = sb.init(SMALL, spec, seed=0)
    actor, critic = sb.networks(agent)["actor"], sb.networks(agent)["critic"]
    assert set(actor) == {"encoder", "predictor_mean", "predictor_std"}
    assert set(critic) == {"head_0", "head_1"} and sb.critic_heads(SMALL, spec) == 2
    assert set(critic["head_0"]) == {"encoder", "predictor"}
    assert set(critic["head_0"]["encoder"]) == {"embedder", "block_0", "block_1", "final_norm"}
    d, a = 16, 3
    assert _count(actor["encoder"]) == _encoder_count(7, d, 1)
    assert _count(actor) == _encoder_count(7, d, 1) + 2 * (d * a + a)
    d = 32
    assert _count(critic["head_0"]["encoder"]) == _encoder_count(10, d, 2)
    assert _count(critic["head_0"]["predictor"]) == d + 1
    assert _count(critic) == 2 * (_encoder_count(10, d, 2) + d + 1)
    # the heads are independent draws; the target starts equal to the critic
    assert not np.allclose(critic["head_0"]["predictor"]["kernel"],
                           critic["head_1"]["predictor"]["kernel"])
    _assert_trees_close(agent.target, critic, 0, 0)
    # inits: orthogonal embedding (7 x 16: orthonormal rows) and head (unit column),
    # He-normal block kernels (std sqrt(2 / fan_in)), zero biases
    w = np.asarray(actor["encoder"]["embedder"]["kernel"])
    np.testing.assert_allclose(w @ w.T, np.eye(7), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(critic["head_0"]["predictor"]["kernel"]), 1.0,
                               rtol=1e-5)
    expand = np.asarray(critic["head_0"]["encoder"]["block_0"]["expand"]["kernel"])  # 32 x 128
    assert np.std(expand) == pytest.approx(math.sqrt(2 / 32), rel=0.06)
    contract = np.asarray(critic["head_0"]["encoder"]["block_1"]["contract"]["kernel"])
    assert np.std(contract) == pytest.approx(math.sqrt(2 / 128), rel=0.06)
    assert not np.any(np.asarray(critic["head_0"]["encoder"]["block_0"]["expand"]["bias"]))
    # the default (paper) size, shapes only: humanoid-like 67 + 22 inputs
    big = AgentSpec(obs_dim=67, act_dim=22, discount=0.99, episodic=False, total_updates=1)
    shapes = jax.eval_shape(lambda: sb.init(sb.Config(), big, 0))
    assert _count(shapes.critic.params) == _encoder_count(89, 512, 2) + 513
    assert _count(shapes.actor.params) == _encoder_count(67, 128, 1) + 2 * (128 * 22 + 22)
    assert _encoder_count(89, 512, 2) == pytest.approx(4.25e6, rel=0.01)


def _ln(x, p, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _dense(x, p):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def _encoder_by_hand(p, x, depth):
    h = _dense(x, p["embedder"])
    blocks = []
    for i in range(depth):
        b = p[f"block_{i}"]
        h = h + _dense(np.maximum(_dense(_ln(h, b["norm"]), b["expand"]), 0.0), b["contract"])
        blocks.append(h)
    return _ln(h, p["final_norm"]), blocks


def test_forward_pass_matches_the_architecture_by_hand():
    spec = _spec()
    agent = sb.init(SMALL, spec, seed=1)
    # perturb every parameter so LayerNorm scales/biases and zero-init biases all matter
    rng = np.random.default_rng(0)
    critic = jax.tree.map(lambda x: np.asarray(x) + 0.1 * rng.normal(size=x.shape).astype(
        np.float32), agent.critic.params)
    obs = rng.normal(size=(8, spec.obs_dim)).astype(np.float32)
    action = rng.uniform(-1, 1, (8, spec.act_dim)).astype(np.float32)
    s = sb._static(SMALL, spec)
    q, feats = jax.jit(s.critic.apply)({"params": critic}, obs, action)
    assert q.shape == (2, 8)
    x = np.concatenate([obs, action], -1).astype(np.float64)
    for h in range(2):
        p = jax.tree.map(np.asarray, critic[f"head_{h}"])
        z, blocks = _encoder_by_hand(p["encoder"], x, 2)
        np.testing.assert_allclose(q[h], _dense(z, p["predictor"])[:, 0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(feats["head_hidden"][h], z, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(feats["block_1"][h], blocks[1], rtol=1e-4, atol=1e-4)
    assert set(feats) == {"block_0", "block_1", "head_hidden"}
    # actor: log std squashed into (-10, 2) by tanh, deterministic action = tanh(mean)
    big_obs = jnp.asarray(rng.normal(size=(64, spec.obs_dim)) * 100, jnp.float32)
    mean, log_std, _ = jax.jit(s.actor.apply)({"params": agent.actor.params}, big_obs)
    p = jax.tree.map(np.asarray, agent.actor.params)
    z, _ = _encoder_by_hand(p["encoder"], np.asarray(big_obs, np.float64), 1)
    np.testing.assert_allclose(mean, _dense(z, p["predictor_mean"]), rtol=1e-4, atol=1e-4)
    raw = _dense(z, p["predictor_std"])
    np.testing.assert_allclose(log_std, -10 + 12 * 0.5 * (1 + np.tanh(raw)), rtol=1e-4,
                               atol=1e-4)
    assert float(log_std.min()) >= -10 and float(log_std.max()) <= 2
    np.testing.assert_allclose(sb.act(agent, big_obs, jax.random.PRNGKey(0), deterministic=True),
                               np.tanh(mean), atol=1e-6)
    sample = sb.act(agent, big_obs, jax.random.PRNGKey(0))
    assert sample.shape == (64, spec.act_dim) and float(jnp.abs(sample).max()) <= 1.0
    assert not np.allclose(sample, np.tanh(mean))


# -- optimiser --------------------------------------------------------------------------------

def test_adamw_weight_decay_with_zero_gradients():
    # Adam's step on a zero gradient is zero, so one AdamW step leaves exactly
    # theta - lr * wd * theta: the decoupled decay on every parameter (LayerNorm and biases too)
    spec = _spec()
    agent = sb.init(SMALL, spec, seed=0)
    assert float(agent.temperature.params) == pytest.approx(math.log(0.01), rel=1e-6)
    shrink = 1.0 - 1e-2 * 0.5
    for temp_wd, temp_shrink in (("on", shrink), ("off", 1.0)):
        cfg = sb.Config(actor=SMALL.actor, critic=SMALL.critic, lr=1e-2, weight_decay=0.5,
                        temperature_weight_decay=temp_wd)
        s = sb._static(cfg, spec)

        @jax.jit
        def zero_step(agent):
            def one(ts, tx):
                return apply_gradients(ts, jax.tree.map(jnp.zeros_like, ts.params), tx).params
            return (one(agent.actor, s.tx), one(agent.critic, s.tx),
                    one(agent.temperature, s.temp_tx))

        actor, critic, log_alpha = zero_step(agent)
        for new, old in ((actor, agent.actor.params), (critic, agent.critic.params)):
            _assert_trees_close(new, jax.tree.map(lambda p: p * shrink, old), 1e-6, 1e-9)
        assert float(log_alpha) == pytest.approx(math.log(0.01) * temp_shrink, rel=1e-6)
    # and the agent's own optimiser is AdamW(1e-4, weight decay 1e-2) on a non-zero gradient
    ref = optax.adamw(1e-4, weight_decay=1e-2)
    step = jax.jit(lambda tx, p: tx.update(jax.tree.map(jnp.ones_like, p), tx.init(p), p)[0],
                   static_argnums=0)
    _assert_trees_close(step(sb._static(SMALL, spec).tx, agent.critic.params),
                        step(ref, agent.critic.params), 1e-6, 1e-12)


# -- the update -------------------------------------------------------------------------------

def _manual_update(cfg, spec, agent, batch):
    """One Simba update written out by hand with optax.adamw: actor -> temperature -> critic
    (target from the new actor and temperature) -> Polyak. Returns the pieces and, for
    contrast, the target from the old actor and temperature."""
    s = sb._static(cfg, spec)   # the modules only (forward passes checked by hand above)
    tx = optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)
    _, k_actor, k_next = jax.random.split(agent.key, 3)

    def pi(params, obs, key):
        mean, log_std, _ = s.actor.apply({"params": params}, obs)
        std = jnp.exp(log_std)
        u = mean + std * jax.random.normal(key, mean.shape)
        a = jnp.tanh(u)
        # log(1 - tanh(u)^2) = log 4 - 2 log(e^u + e^-u), written stably
        logp = jax.scipy.stats.norm.logpdf(u, mean, std) - (
            math.log(4.0) - 2.0 * jnp.logaddexp(u, -u))
        return a, logp.sum(-1)

    def q(params, obs, a):
        return s.critic.apply({"params": params}, obs, a)[0]     # (H, B)

    def step(params, grads):
        upd, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, upd)

    log_alpha = agent.temperature.params
    alpha = jnp.exp(log_alpha)

    def actor_loss(p):
        a, logp = pi(p, batch["obs"], k_actor)
        return jnp.mean(alpha * logp - q(agent.critic.params, batch["obs"], a).min(0)), logp

    a_grads, logp = jax.grad(actor_loss, has_aux=True)(agent.actor.params)
    actor = step(agent.actor.params, a_grads)
    entropy = -jnp.mean(logp)
    t_grad = jnp.exp(log_alpha) * (entropy + cfg.target_entropy_scale * spec.act_dim)
    new_log_alpha = step(log_alpha, t_grad)

    def target(actor_params, alpha_):
        a2, logp2 = pi(actor_params, batch["next_obs"], k_next)
        v = q(agent.target, batch["next_obs"], a2).min(0) - alpha_ * logp2
        return batch["reward"] + spec.discount * (1 - batch["terminated"]) * v

    y = target(actor, jnp.exp(new_log_alpha))
    y_old = target(agent.actor.params, alpha)

    def critic_loss(p):
        return jnp.sum(jnp.mean((q(p, batch["obs"], batch["action"]) - y) ** 2, axis=-1))

    c_loss, c_grads = jax.value_and_grad(critic_loss)(agent.critic.params)
    critic = step(agent.critic.params, c_grads)
    tgt = jax.tree.map(lambda t, p: (1 - cfg.tau) * t + cfg.tau * p, agent.target, critic)
    return dict(actor=actor, log_alpha=new_log_alpha, critic=critic, target=tgt, y=y,
                y_old=y_old, c_loss=c_loss)


def _delta(new, old):
    return jax.tree.map(lambda n, o: np.asarray(n, np.float64) - np.asarray(o, np.float64),
                        new, old)


def test_update_matches_a_manual_computation_with_the_new_actor_and_temperature():
    spec = _spec(episodic=True)                 # two critics: min over heads everywhere
    block = _block(spec, 1, 16, seed=3)
    agent = sb.init(SMALL, spec, seed=2)
    ref = jax.jit(lambda agent, batch: _manual_update(SMALL, spec, agent, batch))(
        agent, jax.tree.map(lambda x: x[0], block))
    new, m = sb.update(sb.init(SMALL, spec, seed=2), block)
    # the critic's target is built from the *new* actor and temperature: the update's mean
    # target agrees with that to float rounding, and is far from the old actor's and
    # temperature's (the difference is ~1e-3 here, the rounding ~1e-7)
    y, y_old = np.asarray(ref["y"], np.float64), np.asarray(ref["y_old"], np.float64)
    got = float(m["critic/target_q_mean"])
    assert abs(got - y.mean()) < 5e-6
    assert abs(got - y_old.mean()) > 2e-4
    assert float(m["critic/loss"]) == pytest.approx(float(ref["c_loss"]), rel=1e-5)
    alpha = float(m["temperature/value"])
    assert alpha == pytest.approx(float(jnp.exp(ref["log_alpha"])), rel=1e-6)
    assert abs(alpha / 0.01 - 1.0) > 5e-5           # the temperature did step (by ~lr)
    # every parameter's step (new - old; each of size ~lr) matches the manual AdamW steps
    old = sb.init(SMALL, spec, seed=2)
    lr = SMALL.lr
    for ours, theirs, before in ((new.actor.params, ref["actor"], old.actor.params),
                                 (new.critic.params, ref["critic"], old.critic.params),
                                 (new.target, ref["target"], old.target)):
        _assert_trees_close(_delta(ours, before), _delta(theirs, before), 0, 0.02 * lr)
    assert max(float(np.abs(x).max()) for x in
               jax.tree.leaves(_delta(new.critic.params, old.critic.params))) > 0.5 * lr
    assert int(new.step) == 1 and bool(m["health/finite"])


def test_scan_of_k_updates_equals_k_single_updates_and_compiles_once():
    spec = _spec(episodic=True)
    block = _block(spec, 3, 16, seed=4)
    fused, m3 = sb.update(sb.init(SMALL, spec, seed=1), block)
    single = sb.init(SMALL, spec, seed=1)
    singles = []
    for i in range(3):
        single, m = sb.update(single, jax.tree.map(lambda x: x[i:i + 1], block))
        singles.append(m)
    _assert_trees_close(fused, single, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(float(m3["critic/loss"]),
                               np.mean([float(m["critic/loss"]) for m in singles]), rtol=1e-5)
    assert int(fused.step) == 3
    # new data, same shapes: no retrace
    before = sb.update._cache_size()
    agent = fused
    for i in range(4):
        agent, _ = sb.update(agent, _block(spec, 3, 16, seed=10 + i))
    assert sb.update._cache_size() == before


def test_short_training_stays_finite_and_reports_stability_metrics():
    spec = _spec(episodic=True)
    agent = sb.init(SMALL, spec, seed=0)
    batch = jax.tree.map(lambda x: x[0], _block(spec, 1, 16, seed=99))
    fresh = sb.stability_metrics(agent, batch)
    # a fresh final LayerNorm (scale 1, bias 0) outputs vectors of norm sqrt(d)
    assert float(fresh["critic/predictor/featnorm"]) == pytest.approx(math.sqrt(32), rel=1e-3)
    assert float(fresh["actor/predictor/featnorm"]) == pytest.approx(math.sqrt(16), rel=1e-3)
    # critic predictor, heads stacked: a (2, 32, 1) kernel of two unit-norm orthogonal
    # columns and a zero (2, 1) bias
    assert float(fresh["critic/predictor/effective_pnorm"]) == pytest.approx(
        math.sqrt(64 * 2.0 / 66), rel=1e-4)
    for i in range(5):
        agent, m = sb.update(agent, _block(spec, 3, 16, seed=20 + i, reward_scale=10.0))
        assert bool(m["health/finite"])
        assert all(np.isfinite(float(v)) for v in m.values())
    assert int(agent.step) == 15
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(agent))
    assert float(m["temperature/value"]) > 0
    metrics = sb.stability_metrics(agent, batch)
    for key in ("critic/encoder/effective_pnorm", "critic/predictor/effective_lr",
                "critic/encoder/featnorm", "critic/encoder/block_1/featnorm",
                "critic/total/gnorm", "actor/encoder/effective_lr",
                "actor/predictor/effective_pnorm"):
        assert key in metrics, key
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["critic/predictor/effective_lr"]) > 0
    assert "critic/other/pnorm" not in metrics and "actor/other/pnorm" not in metrics


def test_single_critic_without_cdq_traces_with_the_same_outputs():
    # shapes only (no compilation): cdq auto on a non-episodic task -> one critic head
    spec = _spec(episodic=False)
    state = jax.eval_shape(lambda: sb.init(SMALL, spec, 0))
    assert set(state.critic.params) == {"head_0"} and sb.critic_heads(SMALL, spec) == 1
    block = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _block(spec, 2, 8))
    new, m = jax.eval_shape(sb.update, state, block)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert {"critic/loss", "critic/target_q_mean", "actor/loss", "temperature/value",
            "health/finite"} <= set(m)
    stab = jax.eval_shape(sb.stability_metrics, state,
                          jax.tree.map(lambda x: x[0], _block(spec, 1, 8)))
    assert "critic/encoder/effective_pnorm" in stab and "critic/predictor/featnorm" in stab
