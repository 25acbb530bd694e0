"""Environment adapters, one per family, behind `TaskEnv` (see base.py)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from pathlib import Path

from suites.envs.base import TaskEnv
from suites.registry import Task, get_task

# family -> adapter module (imported lazily: MyoSuite and HumanoidBench are slow to import).
ADAPTERS = {
    "mujoco": "suites.envs.mujoco",
    "dmc": "suites.envs.dmc",
    "myosuite": "suites.envs.myosuite",
    "hbench": "suites.envs.humanoid_bench",
}


# MuJoCo warnings known to be harmless for the benchmark, dropped instead of printed:
#  - MyoSuite attaches its sub-models (mjSpec.attach) without a prefix, on every env creation;
#  - dm_control's cheetah.xml and gymnasium's half_cheetah.xml use the deprecated compiler
#    attribute `settotalmass` (the compiled model is unchanged by the deprecation).
HARMLESS_MUJOCO_WARNINGS = (
    "Attaching a spec with an empty prefix may prevent the model from being saved correctly",
    "compiler attribute 'settotalmass' is deprecated",
)


def mujoco_log_path() -> Path:
    """Where MuJoCo's log goes instead of MUJOCO_LOG.TXT in the working directory:
    $SIMBABENCH_MUJOCO_LOG, else <XDG cache>/simbabench/MUJOCO_LOG.TXT."""
    explicit = os.environ.get("SIMBABENCH_MUJOCO_LOG")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "simbabench" / "MUJOCO_LOG.TXT"


def _on_mujoco_warning(msg: str) -> None:
    """MuJoCo's warning handler, minus the known-harmless messages: print to stderr as MuJoCo
    does and append to `mujoco_log_path()` in MuJoCo's log format."""
    try:
        if any(h in msg for h in HARMLESS_MUJOCO_WARNINGS):
            return
        print(f"WARNING: {msg}\n", file=sys.stderr, flush=True)
        path = mujoco_log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(f"WARNING {time.ctime()}: {msg}\n\n")
    except Exception:  # a log handler must never raise into MuJoCo
        pass


class _HarmlessMujocoFilter(logging.Filter):
    """dm_control replaces MuJoCo's warning handler with one that logs through absl
    ("WARNING:absl:..."): drop the known-harmless messages there too."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        return not any(h in msg for h in HARMLESS_MUJOCO_WARNINGS)


_mujoco_configured = False


def configure_mujoco_logging() -> None:
    """Once per process: route MuJoCo's warnings through `_on_mujoco_warning` (unless the
    program installed its own handler) and point MuJoCo's default log file, used for anything
    else it logs, at `mujoco_log_path()` (MuJoCo 3.17's `MjLogConfig`; older MuJoCo has no such
    setting and always writes MUJOCO_LOG.TXT to the working directory)."""
    global _mujoco_configured
    if _mujoco_configured:
        return
    _mujoco_configured = True
    logging.getLogger("absl").addFilter(_HarmlessMujocoFilter())
    import mujoco

    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_on_mujoco_warning)
    if hasattr(mujoco, "MjLogConfig"):
        path = mujoco_log_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        cfg = mujoco.MjLogConfig.get()
        cfg.logfile = str(path)
        cfg.set()


def make_env(task: Task | str, seed: int, render_mode: str | None = None) -> TaskEnv:
    """Create the benchmark env for `task`, seeded with `seed` (use `suites.env_seeds(run_seed)`
    to get distinct training and evaluation seeds). The first `reset()` starts episode 0."""
    configure_mujoco_logging()
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


__all__ = ["ADAPTERS", "TaskEnv", "make_env", "is_available", "mujoco_log_path",
           "configure_mujoco_logging"]
