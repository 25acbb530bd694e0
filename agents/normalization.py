"""Running observation normalisation (RSNorm) and reward scaling, in float64 on the host.

docs/simbav2.md (RSNorm). Statistics are float64 numpy (the float32 version measurably
hurts, SimbaV2 issue #8); replay keeps raw observations and rewards, and a sampled batch is
normalised with the *current* statistics at update time (`normalize_block`).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-8


class RunningMeanStd:
    """Per-feature running mean and variance (Chan et al. parallel update), float64.
    Initial state: mean 0, var 1, count 1e-4 (as the paper's code)."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        """x: (n, *shape) samples."""
        x = np.asarray(x, np.float64)
        self.update_moments(x.mean(axis=0), x.var(axis=0), x.shape[0])

    def update_one(self, x) -> None:
        """One sample (shape `shape`); the n = 1 case of `update` without the reductions."""
        self.update_moments(np.asarray(x, np.float64), 0.0, 1)

    def update_moments(self, batch_mean, batch_var, batch_count: int) -> None:
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * (batch_count / total)
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * (
            self.count * batch_count / total)
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": np.asarray(self.var).copy(),
                "count": np.float64(self.count)}

    def load_state_dict(self, d: dict) -> None:
        self.mean = np.array(d["mean"], np.float64)
        self.var = np.array(d["var"], np.float64)
        self.count = float(d["count"])


class ObservationNormalizer(RunningMeanStd):
    """o_bar = (o - mu) / sqrt(var + 1e-8); updated only with observations acted on in
    training (warm-up included), never during evaluation."""

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Float64 in, float32 out (what the networks take)."""
        return ((np.asarray(obs, np.float64) - self.mean) / np.sqrt(self.var + EPS)).astype(
            np.float32)


class RewardScaler:
    """r_bar = r / sigma_G with sigma_G = max(sqrt(Var[G] + 1e-8), max|G| / g_max), where
    G <- gamma (1 - reset) G + r is the running discounted return; this bounds |G / sigma_G| by
    g_max, the critic's support. `reset_on` chooses what restarts G: `terminated` (the code
    behind the paper's numbers) or `done` (terminated or truncated; the released code)."""

    RESET_RULES = ("terminated", "done")

    def __init__(self, discount: float, g_max: float, reset_on: str = "terminated"):
        if reset_on not in self.RESET_RULES:
            raise ValueError(f"unknown G reset rule {reset_on!r}; valid: "
                             f"{', '.join(self.RESET_RULES)}")
        self.discount = float(discount)
        self.g_max = float(g_max)
        self.reset_on = reset_on
        self.G = 0.0
        self.G_rmax = 0.0
        self.stats = RunningMeanStd(())

    def update(self, reward: float, terminated: bool, truncated: bool) -> None:
        """One training transition. Uses the transition's own flag, so G restarts at r on an
        episode's final step (the paper's code and gymnasium's NormalizeReward do the same)."""
        reset = terminated or (truncated and self.reset_on == "done")
        self.G = self.discount * (1.0 - float(reset)) * self.G + float(reward)
        self.stats.update_one(self.G)
        self.G_rmax = max(self.G_rmax, abs(self.G))

    @property
    def scale(self) -> float:
        return float(max(np.sqrt(self.stats.var + EPS), self.G_rmax / self.g_max))

    def state_dict(self) -> dict:
        return {"G": np.float64(self.G), "G_rmax": np.float64(self.G_rmax),
                "stats": self.stats.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.G = float(d["G"])
        self.G_rmax = float(d["G_rmax"])
        self.stats.load_state_dict(d["stats"])
