"""Uniform replay of raw transitions; samples a whole (k, batch) block for one fused update."""

from __future__ import annotations

import numpy as np

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """Ring buffer of raw transitions (observations float32 as the env gives them, rewards
    unscaled): normalisation happens at sampling time with the current statistics."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity = int(capacity)
        self.data = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros((capacity,), np.float64),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "terminated": np.zeros((capacity,), np.float32),
        }
        self.size = 0
        self.pos = 0

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        i = self.pos
        d = self.data
        d["obs"][i] = obs
        d["action"][i] = action
        d["reward"][i] = reward
        d["next_obs"][i] = next_obs
        d["terminated"][i] = terminated
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample_indices(self, rng: np.random.Generator, k: int, batch: int) -> np.ndarray:
        """(k, batch) uniform indices, drawn at once from the run's replay RNG."""
        return rng.integers(0, self.size, (k, batch))

    def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {f: self.data[f][idx] for f in FIELDS}

    # -- checkpointing: only the filled part is saved ---------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        return {f"replay/{f}": self.data[f][: self.size] for f in FIELDS}

    def state_meta(self) -> dict:
        return {"size": self.size, "pos": self.pos, "capacity": self.capacity}

    def load(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        if meta["capacity"] != self.capacity:
            raise ValueError(f"checkpoint replay capacity {meta['capacity']} != {self.capacity}")
        self.size, self.pos = int(meta["size"]), int(meta["pos"])
        for f in FIELDS:
            self.data[f][: self.size] = arrays[f"replay/{f}"]
