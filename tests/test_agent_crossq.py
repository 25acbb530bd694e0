"""CrossQ against the paper: Batch Renormalization maths, the joint (s, a) / (s', a') critic
pass, policy delay, the fused k-update scan, defaults, and a short synthetic training."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import crossq as cq
from agents.base import AgentSpec, field_docs, load_agent

# a short BRN warm-up so that the multi-step tests cross into renormalisation
SMALL = cq.Config(actor=cq.NetworkConfig(32, 2), critic=cq.NetworkConfig(48, 2), batch_size=32,
                 brn_warmup_steps=4)
EPS = 1e-3


def _spec(obs=7, act=3, episodic=True):
    return AgentSpec(obs_dim=obs, act_dim=act, discount=0.99, episodic=episodic,
                     total_updates=100)


def _block(spec, k, batch, seed=0, next_shift=0.0):
    rng = np.random.default_rng(seed)
    return {"obs": rng.normal(size=(k, batch, spec.obs_dim)).astype(np.float32),
            "action": rng.uniform(-1, 1, (k, batch, spec.act_dim)).astype(np.float32),
            "reward": rng.normal(size=(k, batch)).astype(np.float32),
            "next_obs": (rng.normal(size=(k, batch, spec.obs_dim)) + next_shift
                         ).astype(np.float32),
            "terminated": (rng.integers(0, 5, (k, batch)) == 0).astype(np.float32)}


def _x(seed=0, n=64, f=5):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, f)) * rng.uniform(0.5, 3, f) + rng.normal(size=f) * 2
            ).astype(np.float32)


def _np(tree):
    return jax.tree.map(lambda a: np.array(a), tree)


def _train(module, *args):
    """Jitted training-mode apply -> (y, new batch_stats), and its input gradient for a fixed
    weighting of the output (one compile each instead of op-by-op dispatch). `args` follow x
    in the module call (True: BatchRenorm's train flag; none: flax BatchNorm in train mode)."""
    def fwd(v, x):
        y, upd = module.apply(v, x, *args, mutable=["batch_stats"])
        return y, upd["batch_stats"]

    def grad(v, x, w):
        return jax.grad(lambda z: jnp.sum(w * fwd(v, z)[0]))(x)

    return jax.jit(fwd), jax.jit(grad)


# -- BatchRenorm ------------------------------------------------------------------------------

def _brn_vars(brn, x, seed=0):
    """Variables with a non-trivial scale and bias."""
    v = brn.init(jax.random.PRNGKey(0), x, False)
    rng = np.random.default_rng(seed)
    f = x.shape[-1]
    return {"params": {"scale": jnp.asarray(rng.uniform(0.5, 2, f), jnp.float32),
                       "bias": jnp.asarray(rng.normal(size=f), jnp.float32)},
            "batch_stats": v["batch_stats"]}


def test_batchrenorm_in_warmup_is_plain_batch_norm():
    x = jnp.asarray(_x(0))
    brn = cq.BatchRenorm(momentum=0.99, epsilon=EPS, warmup=5)
    bn = nn.BatchNorm(use_running_average=False, momentum=0.99, epsilon=EPS)
    v = _brn_vars(brn, x)
    # running stats far from the batch's: renormalisation would change the output
    v["batch_stats"] = {"mean": jnp.full((5,), 4.0), "var": jnp.full((5,), 0.01),
                        "steps": jnp.asarray(4, jnp.int32)}       # last warm-up step
    bn_vars = {"params": v["params"],
               "batch_stats": {"mean": v["batch_stats"]["mean"], "var": v["batch_stats"]["var"]}}
    (fwd, grad), (fwd_bn, grad_bn) = _train(brn, True), _train(bn)
    y, stats = fwd(v, x)
    y_bn, stats_bn = fwd_bn(bn_vars, x)
    np.testing.assert_allclose(y, y_bn, atol=1e-5)
    np.testing.assert_allclose(stats["mean"], stats_bn["mean"], rtol=1e-6)
    np.testing.assert_allclose(stats["var"], stats_bn["var"], rtol=1e-5)
    assert int(stats["steps"]) == 5
    # same gradients as batch norm, through the batch statistics
    w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
    np.testing.assert_allclose(grad(v, x, w), grad_bn(bn_vars, x, w), atol=1e-5)
    # the step after warm-up renormalises: the output no longer matches batch norm
    v["batch_stats"] = stats
    y2, _ = fwd(v, x)
    assert np.max(np.abs(np.asarray(y2) - np.asarray(y_bn))) > 0.1


def test_batchrenorm_r_d_clipping_matches_numpy():
    x = _x(2, n=128, f=6)
    brn = cq.BatchRenorm(momentum=0.99, epsilon=EPS, warmup=0, r_max=3.0, d_max=5.0)
    bn = nn.BatchNorm(use_running_average=False, momentum=0.99, epsilon=EPS)
    v = _brn_vars(brn, jnp.asarray(x), seed=3)
    mu_b, var_b = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
    sd_b = np.sqrt(var_b + EPS)
    # per feature: r in range / r clipped high / r clipped low / d clipped +- / d in range
    ra_sd = sd_b * np.array([1.5, 1 / 10, 10.0, 1.0, 1.0, 0.7])
    ra_mean = mu_b - ra_sd * np.array([0.5, 0.1, -0.2, 20.0, -20.0, 2.0])
    ra_var = ra_sd**2 - EPS
    v["batch_stats"] = {"mean": jnp.asarray(ra_mean, jnp.float32),
                        "var": jnp.asarray(ra_var, jnp.float32),
                        "steps": jnp.asarray(0, jnp.int32)}
    (fwd, grad), (_, grad_bn) = _train(brn, True), _train(bn)
    y, _ = fwd(v, jnp.asarray(x))
    r = np.clip(sd_b / ra_sd, 1 / 3, 3)
    d = np.clip((mu_b - ra_mean) / ra_sd, -5, 5)
    assert np.any(r == 3) and np.any(r == 1 / 3) and np.any(d == 5) and np.any(d == -5)
    scale, bias = np.asarray(v["params"]["scale"]), np.asarray(v["params"]["bias"])
    expected = ((x - mu_b) / sd_b * r + d) * scale + bias
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
    # r and d are constants for the gradient: d y / d x = r x (batch norm's gradient)
    w = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)
    bn_vars = {"params": v["params"], "batch_stats": {"mean": v["batch_stats"]["mean"],
                                                      "var": v["batch_stats"]["var"]}}
    g, g_bn = grad(v, jnp.asarray(x), w), grad_bn(bn_vars, jnp.asarray(x), w)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_bn) * r, rtol=1e-3, atol=1e-5)


def test_batchrenorm_eval_uses_running_statistics():
    x = _x(5)
    brn = cq.BatchRenorm(warmup=0)
    v = _brn_vars(brn, jnp.asarray(x), seed=6)
    rng = np.random.default_rng(7)
    mean, var = rng.normal(size=5), rng.uniform(0.2, 4, 5)
    v["batch_stats"] = {"mean": jnp.asarray(mean, jnp.float32),
                        "var": jnp.asarray(var, jnp.float32),
                        "steps": jnp.asarray(3, jnp.int32)}
    y = brn.apply(v, jnp.asarray(x), False)           # batch_stats immutable: no update
    expected = ((x - mean) / np.sqrt(var + EPS) * np.asarray(v["params"]["scale"])
                + np.asarray(v["params"]["bias"]))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
    # each row depends only on itself (no batch statistics)
    np.testing.assert_allclose(brn.apply(v, jnp.asarray(x[:3]), False), y[:3], atol=1e-6)


def test_batchrenorm_running_statistics_momentum():
    brn = cq.BatchRenorm(momentum=0.99, warmup=2)
    x0 = _x(8)
    v = brn.init(jax.random.PRNGKey(0), jnp.asarray(x0), False)
    np.testing.assert_array_equal(v["batch_stats"]["mean"], 0.0)
    np.testing.assert_array_equal(v["batch_stats"]["var"], 1.0)
    assert int(v["batch_stats"]["steps"]) == 0
    mean, var = np.zeros(5), np.ones(5)
    fwd, _ = _train(brn, True)
    for i in range(4):                     # through and past the warm-up
        x = _x(10 + i)
        _, stats = fwd(v, jnp.asarray(x))
        v = {"params": v["params"], "batch_stats": stats}
        mean = 0.99 * mean + 0.01 * x.mean(0)
        var = 0.99 * var + 0.01 * x.var(0)
        np.testing.assert_allclose(v["batch_stats"]["mean"], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v["batch_stats"]["var"], var, rtol=1e-5)
        assert int(v["batch_stats"]["steps"]) == i + 1


# -- the agent --------------------------------------------------------------------------------

def test_joint_forward_pass_statistics_cover_both_halves():
    spec = _spec()
    agent = cq.init(SMALL, spec, seed=3)
    block = _block(spec, 1, 32, seed=1, next_shift=3.0)
    # a' as the update draws it: pi(.|s') sampled with the actor in eval mode (as `act`) and
    # the update's key split
    _, k_next, _ = jax.random.split(agent.key, 3)
    next_action = np.asarray(cq.act(agent, jnp.asarray(block["next_obs"][0]), k_next))
    b = jax.tree.map(lambda x: x[0], block)
    new, _ = cq.update(agent, block)
    joint = np.concatenate([np.concatenate([b["obs"], b["action"]], -1),
                            np.concatenate([b["next_obs"], next_action], -1)], 0)
    for head in ("head_0", "head_1"):
        st = new.critic_stats[head]["encoder_norm_in"]
        np.testing.assert_allclose(st["mean"], 0.01 * joint.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(st["var"], 0.99 + 0.01 * joint.var(0), rtol=1e-5)
        assert int(st["steps"]) == 1
        assert all(int(new.critic_stats[head][k]["steps"]) == 1
                   for k in new.critic_stats[head])
    # (s, a) alone would give other statistics (next_obs is shifted by 3)
    half = np.concatenate([b["obs"], b["action"]], -1)
    assert np.max(np.abs(np.asarray(new.critic_stats["head_0"]["encoder_norm_in"]["mean"])
                         - 0.01 * half.mean(0))) > 0.01
    # the actor (updated at step 0, training mode) saw s only
    np.testing.assert_allclose(new.actor_stats["encoder_norm_in"]["mean"],
                               0.01 * b["obs"].mean(0), rtol=1e-4, atol=1e-6)


def test_policy_delay_updates_actor_every_third_step():
    spec = _spec()
    agent = cq.init(SMALL, spec, seed=0)
    changed = {"actor": [], "actor_stats": [], "temperature": [], "critic": []}
    for i in range(7):
        before = _np({"actor": agent.actor.params, "actor_stats": agent.actor_stats,
                      "temperature": agent.temperature.params, "critic": agent.critic.params})
        agent, m = cq.update(agent, _block(spec, 1, 32, seed=20 + i))
        after = _np({"actor": agent.actor.params, "actor_stats": agent.actor_stats,
                     "temperature": agent.temperature.params, "critic": agent.critic.params})
        for k in changed:
            changed[k].append(any(not np.array_equal(a, b) for a, b in
                                  zip(jax.tree.leaves(before[k]), jax.tree.leaves(after[k]))))
        assert float(m["actor/updated"]) == float(i % 3 == 0)
    expected = [i % 3 == 0 for i in range(7)]
    assert changed["actor"] == expected
    assert changed["actor_stats"] == expected
    assert changed["temperature"] == expected
    assert changed["critic"] == [True] * 7
    assert int(agent.step) == 7


def test_scan_of_k_updates_equals_k_single_updates_and_compiles_once():
    spec = _spec()
    block = _block(spec, 3, 32, seed=4)
    fused, m3 = cq.update(cq.init(SMALL, spec, seed=1), block)
    single = cq.init(SMALL, spec, seed=1)
    singles = []
    for i in range(3):
        single, m = cq.update(single, jax.tree.map(lambda x: x[i:i + 1], block))
        singles.append(m)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(single)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(float(m3["critic/loss"]),
                               np.mean([float(m["critic/loss"]) for m in singles]), rtol=1e-5)
    before = cq.update._cache_size()
    agent = fused
    for i in range(4):                     # new data, same shapes: no retrace
        agent, _ = cq.update(agent, _block(spec, 3, 32, seed=10 + i))
    assert cq.update._cache_size() == before


def test_config_defaults_and_no_target_network():
    c = cq.Config()
    assert (c.critic.width, c.critic.depth) == (2048, 2)
    assert (c.actor.width, c.actor.depth) == (256, 2)
    assert (c.adam_b1, c.lr, c.policy_delay, c.batch_size) == (0.5, 1e-3, 3, 256)
    assert (c.brn_momentum, c.brn_warmup_steps, c.brn_r_max, c.brn_d_max) == (
        0.99, 100_000, 3.0, 5.0)
    assert (c.temperature_init, c.cdq, c.log_std_min, c.log_std_max) == (1.0, "on", -20.0, 2.0)
    assert c.frame_update_rate == 1.0 and c.size()["width"] == 2048
    docs = field_docs(cq.Config)
    assert all(docs.get(f.name) for f in dataclasses.fields(cq.Config))
    with pytest.raises(ValueError):
        cq.Config(cdq="maybe")
    with pytest.raises(ValueError):
        cq.Config(policy_delay=0)
    agent_mod = load_agent("crossq")
    assert not hasattr(agent_mod, "normalizers")
    spec = _spec(obs=17, act=6)
    shapes = jax.eval_shape(lambda: cq.init(c, spec, 0))
    names = {f.name for f in dataclasses.fields(shapes)}
    assert not any("target" in n for n in names)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]]
    assert not any("target" in p for p in paths)
    assert shapes.critic.params["head_1"]["encoder_0"]["kernel"].shape == (23, 2048)
    assert shapes.critic.params["head_0"]["encoder_1"]["kernel"].shape == (2048, 2048)
    assert shapes.actor.params["encoder_1"]["kernel"].shape == (256, 256)
    assert cq.critic_heads(c, spec) == 2
    assert cq.critic_heads(cq.Config(cdq="auto"), _spec(episodic=False)) == 1
    assert set(cq.networks(shapes)) == {"actor", "critic"}


def test_short_training_is_finite_and_reports_stability_metrics():
    spec = _spec()
    agent = cq.init(SMALL, spec, seed=2)          # warm-up 4: crosses into renormalisation
    for i in range(6):
        agent, m = cq.update(agent, _block(spec, 3, 32, seed=40 + i))
        assert bool(m["health/finite"])
        assert all(np.isfinite(float(v)) for v in m.values())
        np.testing.assert_allclose(float(m["actor/updated"]), 1 / 3, rtol=1e-6)
    assert int(agent.step) == 18
    assert int(agent.critic_stats["head_0"]["encoder_norm_0"]["steps"]) == 18
    assert int(agent.actor_stats["encoder_norm_0"]["steps"]) == 6      # steps 0, 3, ..., 15
    batch = jax.tree.map(lambda x: x[0], _block(spec, 1, 32, seed=99))
    sm = cq.stability_metrics(agent, batch)
    for k in ("critic/encoder/effective_pnorm", "critic/predictor/effective_lr",
              "critic/encoder/layer_0/featnorm", "critic/predictor/featnorm",
              "actor/encoder/effective_lr", "actor/predictor/effective_pnorm"):
        assert k in sm and np.isfinite(float(sm[k])) and float(sm[k]) > 0, k
    obs = jnp.asarray(batch["obs"])
    a = cq.act(agent, obs, jax.random.PRNGKey(0))
    assert a.shape == (32, spec.act_dim) and float(jnp.abs(a).max()) <= 1.0
    s = cq._static(SMALL, spec)
    mean = jax.jit(lambda p, st, o: cq._policy(s, SMALL, p, st, o, False)[0])(
        agent.actor.params, agent.actor_stats, obs)
    np.testing.assert_allclose(cq.act(agent, obs, jax.random.PRNGKey(0), deterministic=True),
                               np.tanh(mean), atol=1e-6)
    # eval-mode acting: one observation gets the same action alone or in a batch
    np.testing.assert_allclose(cq.act(agent, obs[:1], None, deterministic=True),
                               cq.act(agent, obs, None, deterministic=True)[:1], atol=1e-6)
