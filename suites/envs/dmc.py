"""DeepMind Control adapter: dm_control's `suite.load` as a Gymnasium env (no Shimmy).

Seeding goes through the task's random state (`task_kwargs={"random": seed}` at load, and a
fresh RandomState on every seeded reset), which is what drives DMC's initial-state randomness.
Observations are the dm_control observation dict flattened in its own (spec) order.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from suites.registry import Task


class DMCEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, env_id: str, seed: int = 0, render_mode: str | None = None):
        from dm_control import suite

        domain, task = env_id.split("-", 1)
        self._env = suite.load(domain, task, task_kwargs={"random": int(seed)})
        self.render_mode = render_mode
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float64),
                                           spec.maximum.astype(np.float64), dtype=np.float64)
        dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float64)

    @staticmethod
    def _flat(obs) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in obs.values()])

    def reset(self, *, seed: int | None = None, options=None):
        if seed is not None:
            self._env.task._random = np.random.RandomState(int(seed))
        ts = self._env.reset()
        return self._flat(ts.observation), {}

    def step(self, action):
        ts = self._env.step(action)
        last = ts.last()
        # dm_env: discount 0 at a true terminal, > 0 when the episode is cut by the time limit.
        terminated = bool(last and ts.discount == 0.0)
        truncated = bool(last and not terminated)
        return self._flat(ts.observation), float(ts.reward or 0.0), terminated, truncated, {}

    def render(self):
        return self._env.physics.render(height=256, width=256, camera_id=0)

    def close(self):
        self._env.close()


def make_base(task: Task, seed: int, render_mode: str | None = None):
    return DMCEnv(task.env_id, seed=seed, render_mode=render_mode), None
