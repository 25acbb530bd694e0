"""HumanoidBench adapter (optional: HumanoidBench is not on the package index).

Found when `humanoid_bench` is importable (`pip install --no-deps -e <checkout>`) or through
HUMANOID_BENCH_PATH=<checkout>. Upstream (commit 791405f) breaks with our pinned
mujoco / dm_control / numpy in three ways; we fix each here without touching its files:
  1. `import humanoid_bench` imports torch, only for hierarchical reach policies the benchmark
     never uses: we register a stand-in for its `mjx.flax_to_torch` module before importing it.
  2. its envs default to `render_mode="rgb_array"` and build a renderer eagerly: we construct
     them with `render_mode=None` unless rendering is asked for.
  3. it vendors dm_control's `mujoco.index` frozen at mujoco 3.1.6 (and numpy-1 only): we point
     it at dm_control's own module.
It also draws from numpy's global RNG where gymnasium's seeded `np_random` should be used
(`h1-reach`: the goal, in reset and when reached; `h1-sit_hard`: the chair's position and
angle at reset), so the same seed gave different episodes. `OwnGlobalRNG` gives each env a
private stream for those draws, seeded from the episode seed at every reset.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import gymnasium as gym
import numpy as np

from suites.registry import RegistryError, Task

ENV_VAR = "HUMANOID_BENCH_PATH"
INSTALL_HINT = (
    "HumanoidBench is not installed (it is not on the package index). Install it with\n"
    "  git clone https://github.com/carlosferrazza/humanoid-bench && "
    "pip install --no-deps -e humanoid-bench\n"
    f"or point {ENV_VAR} at such a checkout.")


class HumanoidBenchMissing(RegistryError):
    """HumanoidBench cannot be imported."""


def _torch_standin() -> types.ModuleType:
    mod = types.ModuleType("humanoid_bench.mjx.flax_to_torch")

    class _NeedsTorch:
        def __init__(self, *args, **kwargs):
            raise ImportError("this HumanoidBench feature (hierarchical policies) needs torch, "
                              "which simbabench does not install")

    mod.TorchModel = mod.TorchPolicy = _NeedsTorch
    return mod


def available() -> bool:
    if importlib.util.find_spec("humanoid_bench") is not None:
        return True
    path = os.environ.get(ENV_VAR)
    return bool(path) and os.path.isdir(os.path.join(path, "humanoid_bench"))


def import_humanoid_bench() -> types.ModuleType:
    """Import HumanoidBench with the three compatibility fixes; raise HumanoidBenchMissing."""
    if "humanoid_bench" in sys.modules:
        return sys.modules["humanoid_bench"]
    path = os.environ.get(ENV_VAR)
    if importlib.util.find_spec("humanoid_bench") is None:
        if not (path and os.path.isdir(os.path.join(path, "humanoid_bench"))):
            raise HumanoidBenchMissing(INSTALL_HINT)
        sys.path.insert(0, os.path.abspath(path))
    import dm_control.mujoco.index as dmc_index

    pkg_dir = importlib.util.find_spec("humanoid_bench").submodule_search_locations[0]
    # Register HB's `dmc_deps` namespace package ourselves so that its `dmc_index` resolves to
    # dm_control's module (a bare sys.modules entry for the leaf would skip the parent).
    deps = types.ModuleType("humanoid_bench.dmc_deps")
    deps.__path__ = [os.path.join(pkg_dir, "dmc_deps")]
    deps.dmc_index = dmc_index
    sys.modules["humanoid_bench.dmc_deps"] = deps
    sys.modules["humanoid_bench.dmc_deps.dmc_index"] = dmc_index
    sys.modules.setdefault("humanoid_bench.mjx.flax_to_torch", _torch_standin())
    return importlib.import_module("humanoid_bench")


def make_base(task: Task, seed: int, render_mode: str | None = None):
    import gymnasium as gym

    import_humanoid_bench()
    spec = gym.spec(task.env_id)
    module, name = spec.entry_point.split(":")
    cls = getattr(importlib.import_module(module), name)
    env = cls(**{**spec.kwargs, "render_mode": render_mode})
    return OwnGlobalRNG(env), None


class OwnGlobalRNG(gym.Wrapper):
    """Runs the env's reset and step with numpy's global RNG swapped for a private stream
    (seeded at each seeded reset), then puts the caller's global state back: the env's draws
    are a function of its episode seed, and code outside it neither perturbs nor is perturbed
    by them."""

    def __init__(self, env):
        super().__init__(env)
        self._state = np.random.RandomState(0).get_state()

    def _with_own_rng(self, fn, *args, **kwargs):
        outer = np.random.get_state()
        np.random.set_state(self._state)
        try:
            return fn(*args, **kwargs)
        finally:
            self._state = np.random.get_state()
            np.random.set_state(outer)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            stream = np.random.SeedSequence([int(seed), 0x4842]).generate_state(1)[0]
            self._state = np.random.RandomState(stream).get_state()
        return self._with_own_rng(self.env.reset, seed=seed, options=options)

    def step(self, action):
        return self._with_own_rng(self.env.step, action)
