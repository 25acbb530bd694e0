"""The paper's 57-task benchmark: registry, name canonicalisation, normalisers and envs."""

from suites.registry import (SUITE_NAMES, TASKS, RegistryError, Task, canonical_name, get_task,
                             horizon_discount, resolve, try_canonical_name)
from suites.seeding import derive_seed, env_seeds


def make_env(*args, **kwargs):
    from suites.envs import make_env as _make_env
    return _make_env(*args, **kwargs)


def is_available(task):
    from suites.envs import is_available as _is_available
    return _is_available(task)


__all__ = ["SUITE_NAMES", "TASKS", "RegistryError", "Task", "canonical_name", "derive_seed",
           "env_seeds", "get_task", "horizon_discount", "is_available", "make_env", "resolve",
           "try_canonical_name"]
