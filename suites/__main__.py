"""`python -m suites list [suite=NAME] [format=table|json]`
`python -m suites check [suite=smoke] [steps=200] [seed=0]`   (steps >= 1, seed >= 0)
`python -m suites --help`

list   prints every task of a suite with domain, obs/action dims measured from the real env,
       action repeat, frames per episode, discount, metric and normalisation constants.
check  creates each env, resets it with a seed, steps it with seeded random actions, and checks
       dims against the registry and that the same seed replays the same trajectory.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "disable")

import numpy as np  # noqa: E402

from agents.base import Valid  # noqa: E402
from harness.cli import UsageError, check_choice, check_keys, fail, split_kv  # noqa: E402
from harness.config import SEED_MAX, parse_value  # noqa: E402
from suites import RegistryError, Task, is_available, make_env, resolve  # noqa: E402
from suites.envs.humanoid_bench import INSTALL_HINT  # noqa: E402

COMMANDS = ("list", "check")


def _measure(task: Task) -> tuple[int | None, int | None]:
    if not is_available(task):
        return None, None
    env = make_env(task, seed=0)
    obs, _ = env.reset()
    dims = int(obs.shape[0]), int(env.action_space.shape[0])
    env.close()
    return dims


def _rollout(task: Task, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Observations and rewards of `steps` agent steps under seeded random actions."""
    env = make_env(task, seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset()
    observations, rewards = [obs], []
    t0 = time.perf_counter()
    frames = 0
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(
            rng.uniform(-1, 1, env.action_space.shape))
        frames += info["frames"]
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
    fps = frames / max(time.perf_counter() - t0, 1e-9)
    env.close()
    return np.stack(observations), np.asarray(rewards), fps


def _episode_starts(task: Task, seed: int, episodes: int, global_seed: int) -> np.ndarray:
    """The first observation of episodes 0..episodes-1 (each re-created by its index), after
    setting numpy's global RNG to `global_seed`: an env whose resets (targets, object
    placements) draw from unseeded or global randomness gives different starts."""
    np.random.seed(global_seed)
    env = make_env(task, seed=seed)
    starts = [env.reset_to_episode(i)[0] for i in (*range(episodes), 0)]
    env.close()
    return np.stack(starts)


def cmd_list(tasks: list[Task], fmt: str) -> int:
    rows = []
    for t in tasks:
        obs_dim, act_dim = _measure(t)
        rows.append(dict(name=t.name, domain=t.domain, family=t.family, env_id=t.env_id,
                         obs_dim=obs_dim, act_dim=act_dim, measured=obs_dim is not None,
                         expected_obs_dim=t.obs_dim, expected_act_dim=t.act_dim,
                         action_repeat=t.action_repeat, episode_frames=t.episode_frames,
                         discount=t.discount, episodic=t.episodic, metric=t.metric,
                         normaliser=t.normaliser, random_score=t.random_score,
                         reference_score=t.reference_score))
    if fmt == "json":
        print(json.dumps(rows, indent=1))
        return 0
    head = (f"{'task':24s} {'domain':9s} {'obs':>4s} {'act':>3s} {'rep':>3s} {'frames':>6s} "
            f"{'gamma':>6s} {'metric':11s} {'normaliser':12s} {'random':>9s} {'reference':>9s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        dims = (f"{r['obs_dim']:4d} {r['act_dim']:3d}" if r["measured"]
                else f"{'?':>4s} {'?':>3s}")
        fmt_num = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9s}"  # noqa: E731
        print(f"{r['name']:24s} {r['domain']:9s} {dims} {r['action_repeat']:3d} "
              f"{r['episode_frames']:6d} {r['discount']:6.3f} {r['metric']:11s} "
              f"{r['normaliser']:12s} {fmt_num(r['random_score'])} "
              f"{fmt_num(r['reference_score'])}")
    if not all(r["measured"] for r in rows):
        print("\n? = not measured: " + INSTALL_HINT.splitlines()[0], file=sys.stderr)
    return 0


def cmd_check(tasks: list[Task], steps: int, seed: int) -> int:
    failures = 0
    for t in tasks:
        if not is_available(t):
            print(f"{t.name:24s} skipped: HumanoidBench is not installed")
            continue
        obs_a, rew_a, fps = _rollout(t, seed, steps)
        obs_b, rew_b, _ = _rollout(t, seed, steps)
        problems = []
        if obs_a.shape[1] != t.obs_dim:
            problems.append(f"obs dim {obs_a.shape[1]} != registry {t.obs_dim}")
        if not (np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)):
            problems.append("same seed gave a different trajectory")
        # reset-time randomness: the same (seed, episode) starts the same way, whatever
        # numpy's global RNG holds and whichever episodes came before
        starts_a = _episode_starts(t, seed, 3, global_seed=1)
        starts_b = _episode_starts(t, seed, 3, global_seed=2)
        if not (np.array_equal(starts_a, starts_b) and np.array_equal(starts_a[0], starts_a[-1])):
            problems.append("same seed and episode gave a different start (reset randomness "
                            "is not seeded)")
        if not np.isfinite(obs_a).all():
            problems.append("non-finite observation")
        status = "ok" if not problems else "FAIL: " + "; ".join(problems)
        failures += bool(problems)
        print(f"{t.name:24s} {status:6s} {steps} steps, {fps:8.0f} frames/s, "
              f"return {rew_a.sum():10.2f}")
    print(f"{len(tasks) - failures}/{len(tasks)} tasks passed" if failures else
          f"all {len(tasks)} tasks passed")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        from suites.tasks import SUITES
        print(__doc__)
        print("suites (suite=; or one task name, or several joined by commas):")
        for name, members in SUITES.items():
            print(f"  {name:12s} {', '.join(members)}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        fail(f"expected a command: {' | '.join(COMMANDS)}\n{__doc__}")
    cmd, rest = argv[0], argv[1:]
    try:
        kv = split_kv(rest)
        if cmd == "list":
            check_keys(kv, {"suite", "format"})
            fmt = check_choice("format", kv.get("format", "table"), ("table", "json"))
            return cmd_list(resolve(kv.get("suite", "all")), fmt)
        check_keys(kv, {"suite", "steps", "seed"})
        steps = parse_value("steps", kv.get("steps", "200"), int)
        seed = parse_value("seed", kv.get("seed", "0"), int)
        for key, value, valid in (("steps", steps, Valid(low=1, high=10_000_000)),
                                  ("seed", seed, Valid(low=0, high=SEED_MAX))):
            try:
                valid.check(key, value)
            except ValueError as e:
                raise UsageError(str(e)) from None
        return cmd_check(resolve(kv.get("suite", "smoke")), steps, seed)
    except (UsageError, RegistryError) as e:
        fail(str(e))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
