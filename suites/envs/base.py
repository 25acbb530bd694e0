"""The one environment interface every domain adapter sits behind.

`TaskEnv` applies, in the paper's order, env -> RescaleAction(-1, 1) -> TimeLimit(frames) ->
RepeatAction, and seeds every episode from (env seed, episode index), so the same seed gives
the same trajectory under the same actions in every domain, and an episode in progress can be
re-created exactly by resetting to its index and replaying its actions (used by resume).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from suites.registry import Task
from suites.seeding import derive_seed


class TaskEnv(gym.Env):
    """Gymnasium API over one benchmark task.

    Observations: float32, shape (task.obs_dim,). Actions: float, shape (task.act_dim,) in
    [-1, 1] (clipped, then mapped linearly onto the native bounds). One `step` = up to
    `task.action_repeat` env frames; rewards are summed and the repeat stops at a terminal or
    truncation. `truncated` is set when the episode reaches `task.episode_frames` frames (or the
    underlying env truncates). `info` carries `frames` (frames this step) and, where the domain
    defines success, `success` (bool, from the last sub-step as in the paper's RepeatAction).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: Task, base: gym.Env, seed: int,
                 success: Callable[[dict], bool] | None = None):
        self.task = task
        self._base = base
        self._success = success
        space = base.action_space
        self._low = np.asarray(space.low, dtype=np.float64)
        self._high = np.asarray(space.high, dtype=np.float64)
        self._native_dtype = space.dtype
        self.action_space = gym.spaces.Box(-1.0, 1.0, (int(np.prod(space.shape)),), np.float32)
        obs_shape = base.observation_space.shape
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (int(np.prod(obs_shape)),),
                                                np.float32)
        self.render_mode = getattr(base, "render_mode", None)
        self.seed_value = int(seed)
        self.episode = -1           # index of the current episode since the last seeding
        self.frames = 0             # env frames in the current episode

    # -- seeding ---------------------------------------------------------------------------
    @property
    def episode_seed(self) -> int:
        return derive_seed(self.seed_value, self.episode)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start the next episode; `seed` re-seeds the env and restarts the episode count."""
        if seed is not None:
            self.seed_value = int(seed)
            self.episode = -1
        self.episode += 1
        self.frames = 0
        obs, info = self._base.reset(seed=self.episode_seed)
        return self._obs(obs), self._info(info, 0)

    def reset_to_episode(self, episode: int):
        """Reset so that the new episode is episode number `episode` of the current seed."""
        self.episode = int(episode) - 1
        return self.reset()

    # -- stepping --------------------------------------------------------------------------
    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(self._low.shape), -1.0, 1.0)
        native = (self._low + (a + 1.0) * 0.5 * (self._high - self._low)).astype(
            self._native_dtype, copy=False)
        total = 0.0
        frames = 0
        terminated = truncated = False
        info: dict = {}
        for _ in range(self.task.action_repeat):
            obs, reward, terminated, truncated, info = self._base.step(native)
            total += float(reward)
            frames += 1
            self.frames += 1
            if self.frames >= self.task.episode_frames:
                truncated = True
            if terminated or truncated:
                break
        return self._obs(obs), total, bool(terminated), bool(truncated), self._info(info, frames)

    def _obs(self, obs) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32).reshape(-1)

    def _info(self, info: dict, frames: int) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": frames}
        if self._success is not None:
            out["success"] = bool(self._success(info))
        return out

    def render(self):
        return self._base.render()

    def close(self):
        self._base.close()
