"""Real environments of every domain: creation, dims, seeding, action mapping, repeat, limits."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from suites import TASKS, env_seeds, get_task, is_available, make_env
from suites.envs.humanoid_bench import HumanoidBenchMissing

HB_REASON = "HumanoidBench is not installed (pip install --no-deps -e <checkout> or " \
            "HUMANOID_BENCH_PATH=<checkout>)"


def _task_params():
    for name, t in TASKS.items():
        marks = [pytest.mark.skipif(not is_available(t), reason=HB_REASON)]
        yield pytest.param(name, marks=marks, id=name)


def _rollout(env, actions, reset_seed=None):
    obs, _ = env.reset(seed=reset_seed)
    traj, rewards = [obs], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        traj.append(obs)
        rewards.append(r)
        if term or trunc:
            traj.append(env.reset()[0])
    return np.stack(traj), np.asarray(rewards)


@pytest.mark.parametrize("name", list(_task_params()))
def test_every_task_creates_resets_and_steps(name):
    t = get_task(name)
    env = make_env(t, seed=123)
    obs, info = env.reset()
    assert obs.shape == (t.obs_dim,) and obs.dtype == np.float32
    assert env.observation_space.shape == (t.obs_dim,)
    assert env.action_space.shape == (t.act_dim,)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, reward, term, trunc, info = env.step(rng.uniform(-1, 1, t.act_dim))
        assert np.isfinite(obs).all() and np.isfinite(reward)
        assert 1 <= info["frames"] <= t.action_repeat
        assert ("success" in info) == (t.family == "myosuite")
        if term or trunc:
            break
    env.close()


FAMILY_TASKS = {"mujoco": "Hopper-v4", "dmc": "cartpole-swingup", "myosuite": "myo-reach-hard",
                "hbench": "h1-walk-v0"}


@pytest.mark.parametrize("family", list(FAMILY_TASKS))
def test_same_seed_same_trajectory_other_seed_other_start(family):
    t = get_task(FAMILY_TASKS[family])
    if not is_available(t):
        pytest.skip(HB_REASON)
    actions = np.random.default_rng(1).uniform(-1, 1, (60, t.act_dim))
    a_obs, a_rew = _rollout(make_env(t, seed=5), actions)
    b_obs, b_rew = _rollout(make_env(t, seed=5), actions)
    np.testing.assert_array_equal(a_obs, b_obs)
    np.testing.assert_array_equal(a_rew, b_rew)
    # Re-seeding an existing env through reset(seed=...) replays the same episode too.
    env = make_env(t, seed=99)
    env.reset()
    c_obs, _ = _rollout(env, actions, reset_seed=5)
    np.testing.assert_array_equal(a_obs, c_obs)
    # Another seed starts elsewhere; consecutive episodes of one seed differ as well.
    other, _ = make_env(t, seed=6).reset()
    assert not np.array_equal(other, a_obs[0])
    env = make_env(t, seed=5)
    first, _ = env.reset()
    second, _ = env.reset()
    assert not np.array_equal(first, second)
    # An episode can be re-created from its index (what resume relies on).
    again, _ = env.reset_to_episode(0)
    np.testing.assert_array_equal(first, again)


def test_training_and_evaluation_seeds_differ_and_are_derived():
    train, evaluation = env_seeds(0)
    assert train != evaluation and env_seeds(0) == (train, evaluation)
    assert len({s for seed in range(50) for s in env_seeds(seed)}) == 100


def test_actions_are_rescaled_onto_native_bounds():
    env = make_env("Humanoid-v4", seed=0)  # native bounds [-0.4, 0.4]
    env.reset()
    native = env._base.action_space
    assert native.high.max() == pytest.approx(0.4)
    env.step(np.ones(17))
    np.testing.assert_allclose(env._base.data.ctrl, native.high, rtol=1e-6)
    env.step(-np.ones(17) * 3.0)  # out of range: clipped to -1, i.e. the native low
    np.testing.assert_allclose(env._base.data.ctrl, native.low, rtol=1e-6)
    env.step(np.zeros(17))
    np.testing.assert_allclose(env._base.data.ctrl, (native.low + native.high) / 2, atol=1e-7)


def test_action_repeat_sums_rewards_and_time_limit_counts_frames():
    from dm_control import suite

    t = get_task("cartpole-swingup")
    env = make_env(t, seed=3)
    env.reset()
    raw = suite.load("cartpole", "swingup")
    raw.task._random = np.random.RandomState(env.episode_seed)
    raw.reset()
    rng = np.random.default_rng(0)
    steps = 0
    while True:
        a = rng.uniform(-1, 1, 1)
        _, reward, term, trunc, info = env.step(a)
        expect = sum(raw.step(a).reward for _ in range(2))
        assert reward == pytest.approx(expect, abs=1e-12)
        assert info["frames"] == 2
        steps += 1
        if term or trunc:
            break
    assert (steps, env.frames, term, trunc) == (500, 1000, False, True)


def test_repeat_stops_at_a_terminal():
    t = dataclasses.replace(get_task("Hopper-v4"), action_repeat=3)
    env = make_env(t, seed=0)
    env.reset()
    raw = make_env(get_task("Hopper-v4"), seed=0)
    raw.reset()
    action = np.ones(3)  # falls over within a few dozen frames
    raw_frames = 0
    while True:
        raw_frames += 1
        if raw.step(action)[2]:
            break
    steps = 0
    while True:
        steps += 1
        _, _, term, trunc, info = env.step(action)
        if term or trunc:
            break
    assert term and not trunc
    assert env.frames == raw_frames
    assert info["frames"] == raw_frames - 3 * (steps - 1)


def test_humanoid_bench_missing_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "HUMANOID_BENCH_PATH"}
    probe = "import importlib.util as u; print(u.find_spec('humanoid_bench') is not None)"
    if subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                      text=True).stdout.strip() == "True":
        pytest.skip("HumanoidBench is pip-installed in this environment")
    code = ("import suites\n"
            "try:\n    suites.make_env('h1-walk-v0', seed=0)\n"
            "except Exception as e:\n    print(type(e).__name__); print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith(HumanoidBenchMissing.__name__)
    assert "pip install --no-deps -e" in out and "HUMANOID_BENCH_PATH" in out


def test_suites_list_json_reports_measured_dims():
    out = subprocess.run([sys.executable, "-m", "suites", "list", "suite=dmc-hard,myo-reach",
                          "format=json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [r["name"] for r in rows][-1] == "myo-reach" and len(rows) == 8
    for r in rows:
        t = get_task(r["name"])
        assert (r["obs_dim"], r["act_dim"]) == (t.obs_dim, t.act_dim)
        assert r["discount"] == t.discount and r["metric"] == t.metric
        for key in ("domain", "action_repeat", "episode_frames", "random_score",
                    "reference_score"):
            assert key in r


def test_cli_rejects_bad_input():
    for args, needle in ([["list", "suite=dmc-hardd"], "dmc-hard"],
                         [["list", "format=xml"], "table, json"],
                         [["list", "suit=all"], "suite"],
                         [["frobnicate"], "list | check"]):
        p = subprocess.run([sys.executable, "-m", "suites", *args], capture_output=True,
                           text=True)
        assert p.returncode == 2, args
        assert needle in p.stderr, (args, p.stderr)


@pytest.mark.parametrize("name", ["h1-reach-v0", "h1-sit_hard-v0"])
def test_humanoid_bench_resets_are_seeded_and_leave_the_global_rng_alone(name):
    """These tasks draw their goal / chair placement from numpy's global RNG; the adapter
    gives each env a private stream seeded from the episode seed."""
    t = get_task(name)
    if not is_available(t):
        pytest.skip(HB_REASON)
    actions = np.random.default_rng(2).uniform(-1, 1, (40, t.act_dim))
    np.random.seed(1)
    a_obs, a_rew = _rollout(make_env(t, seed=5), actions)
    np.random.seed(2)                       # other code moved the global RNG meanwhile
    b_obs, b_rew = _rollout(make_env(t, seed=5), actions)
    np.testing.assert_array_equal(a_obs, b_obs)
    np.testing.assert_array_equal(a_rew, b_rew)
    env = make_env(t, seed=5)
    starts = [env.reset_to_episode(i)[0] for i in (0, 1, 2, 0)]
    np.testing.assert_array_equal(starts[0], starts[3])
    assert not np.array_equal(starts[0], starts[1])     # episodes differ, reproducibly
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    env.reset()
    env.step(actions[0])
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's stream untouched
