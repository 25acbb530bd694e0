"""MyoSuite adapter. Success is MyoSuite's `solved` flag (the paper's `info["success"]`)."""

from __future__ import annotations

import contextlib
import sys
import warnings

from suites.registry import Task


def _solved(info: dict) -> bool:
    return bool(info.get("solved", False))


def make_base(task: Task, seed: int, render_mode: str | None = None):
    # MyoSuite prints banners and model-compiler warnings; keep stdout clean for JSON output.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        from myosuite.utils import gym as myo_gym

        # Keep MyoSuite's registered time limits (ObjHold 75, PenTwirl 50 frames) and its
        # instability-termination wrapper: both are part of the benchmark as the paper ran it.
        env = myo_gym.make(task.env_id)
    return env, _solved
