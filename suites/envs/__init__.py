"""Environment adapters, one per family, behind `TaskEnv` (see base.py)."""

from __future__ import annotations

import importlib

from suites.envs.base import TaskEnv
from suites.registry import Task, get_task

# family -> adapter module (imported lazily: MyoSuite and HumanoidBench are slow to import).
ADAPTERS = {
    "mujoco": "suites.envs.mujoco",
    "dmc": "suites.envs.dmc",
    "myosuite": "suites.envs.myosuite",
    "hbench": "suites.envs.humanoid_bench",
}


def make_env(task: Task | str, seed: int, render_mode: str | None = None) -> TaskEnv:
    """Create the benchmark env for `task`, seeded with `seed` (use `suites.env_seeds(run_seed)`
    to get distinct training and evaluation seeds). The first `reset()` starts episode 0."""
    task = task if isinstance(task, Task) else get_task(task)
    adapter = importlib.import_module(ADAPTERS[task.family])
    base, success = adapter.make_base(task, seed=seed, render_mode=render_mode)
    return TaskEnv(task, base, seed=seed, success=success)


def is_available(task: Task | str) -> bool:
    """False only for HumanoidBench tasks when HumanoidBench is not installed."""
    task = task if isinstance(task, Task) else get_task(task)
    if task.family == "hbench":
        from suites.envs.humanoid_bench import available
        return available()
    return True


__all__ = ["ADAPTERS", "TaskEnv", "make_env", "is_available"]
