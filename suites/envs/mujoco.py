"""Gym MuJoCo v4 adapter (Gymnasium's own environments)."""

from __future__ import annotations

import warnings

import gymnasium as gym

from suites.registry import Task


def make_base(task: Task, seed: int, render_mode: str | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v4 is "out of date" in gymnasium 1.x; the paper used v4
        env = gym.make(task.env_id, render_mode=render_mode)
    # TaskEnv applies the paper's TimeLimit in frames; skip gymnasium's duplicate wrappers.
    return env.unwrapped, None
