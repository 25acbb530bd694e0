"""The environment side of a run: the training env, the episode in progress and the host-side
float64 normalisers (observation RSNorm, reward scaling) that see every training transition.

It knows nothing about the agent: the runner gives it each action (random during warm-up, the
policy's after) and hands the transitions it returns to the learner.
"""

from __future__ import annotations

import warnings

import numpy as np

from harness.checkpoint import flatten, unflatten
from suites import derive_seed, make_env


class EnvWorker:
    """env, episode bookkeeping and normalisers of one seed.

    obs: the current raw observation; steps: agent steps taken; episode_return /
    last_return: the running and the last finished episode's undiscounted return."""

    def __init__(self, task, seed: int, train_seed: int, obs_norm, rew_scale,
                 make_env=make_env):
        self.task = task
        self.env = make_env(task, train_seed)  # in this process, or a harness.envpool one
        self.obs_norm, self.rew_scale = obs_norm, rew_scale
        self.warmup_rng = np.random.default_rng(derive_seed(seed, "warmup"))
        self.steps = 0
        self.obs, _ = self.env.reset()
        self.episode_actions: list[np.ndarray] = []
        self.episode_return = 0.0
        self.last_return = float("nan")

    # -- stepping ---------------------------------------------------------------------------
    def observe(self) -> None:
        """The current observation enters the statistics (before acting on it; warm-up too)."""
        if self.obs_norm is not None:
            self.obs_norm.update_one(self.obs)

    def random_action(self) -> np.ndarray:
        return self.warmup_rng.uniform(-1.0, 1.0, self.task.act_dim).astype(np.float32)

    def policy_obs(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations (..., O) -> what the networks take (normalised float32)."""
        return self.obs_norm.normalize(obs) if self.obs_norm is not None else np.asarray(
            obs, np.float32)

    def step(self, action: np.ndarray) -> tuple:
        """One agent step. Returns the transition (obs, action, reward, next_obs, terminated,
        episode_end) and moves on to the next observation (a reset after an episode end)."""
        return self.took(action, self.env.step(action))

    def took(self, action: np.ndarray, result: tuple) -> tuple:
        """`step` after the env stepped elsewhere (harness.envpool.step_all): `result` is the
        env's (next_obs, reward, terminated, truncated, info) for `action`."""
        obs = self.obs
        next_obs, reward, terminated, truncated, _ = result
        if self.rew_scale is not None:
            self.rew_scale.update(reward, terminated, truncated)
        self.steps += 1
        self.episode_return += reward
        end = bool(terminated or truncated)
        if end:
            self.last_return = self.episode_return
            self.episode_return = 0.0
            self.obs, _ = self.env.reset()
            self.episode_actions = []
        else:
            self.obs = next_obs
            self.episode_actions.append(action)
        return obs, action, reward, next_obs, terminated, end

    def normalise(self, batch: dict) -> dict:
        """A raw replay batch -> the update's inputs, with the *current* statistics."""
        out = dict(batch)
        if self.obs_norm is not None:
            out["obs"] = self.obs_norm.normalize(batch["obs"])
            out["next_obs"] = self.obs_norm.normalize(batch["next_obs"])
        scale = self.rew_scale.scale if self.rew_scale is not None else 1.0
        out["reward"] = (batch["reward"] / scale).astype(np.float32)
        return out

    @property
    def reward_scale(self) -> float:
        return self.rew_scale.scale if self.rew_scale is not None else 1.0

    # -- state ------------------------------------------------------------------------------
    def state(self, arrays: dict, meta: dict) -> None:
        """Add this worker's state to a checkpoint's arrays and meta."""
        arrays["obs"] = np.asarray(self.obs)
        arrays["episode_actions"] = np.asarray(self.episode_actions, np.float32).reshape(
            -1, self.task.act_dim)
        for name, n in (("obs_norm", self.obs_norm), ("rew_scale", self.rew_scale)):
            if n is not None:
                arrays.update(flatten(name, n.state_dict()))
        meta.update({"steps": self.steps, "episode": self.env.episode,
                     "episode_return": self.episode_return, "last_return": self.last_return})
        meta.setdefault("rng", {})["warmup_rng"] = self.warmup_rng.bit_generator.state

    def restore(self, arrays: dict, meta: dict) -> None:
        for name in ("obs_norm", "rew_scale"):
            n = getattr(self, name)
            if n is not None:
                n.load_state_dict(unflatten(name, n.state_dict(), arrays))
        self.warmup_rng.bit_generator.state = meta["rng"]["warmup_rng"]
        self.steps = meta["steps"]
        self.episode_return, self.last_return = meta["episode_return"], meta["last_return"]
        # re-create the episode in progress: same episode seed, same actions
        obs, _ = self.env.reset_to_episode(meta["episode"])
        self.episode_actions = list(arrays["episode_actions"])
        for a in self.episode_actions:
            obs = self.env.step(a)[0]
        if not np.array_equal(obs, arrays["obs"]):
            warnings.warn("replaying the episode in progress did not reproduce the saved "
                          "observation: the environment is not deterministic; continuing "
                          "from the saved observation", stacklevel=2)
        self.obs = arrays["obs"]
