"""The learning side of a run: agent state, replay buffer and its sampling RNG, the update
schedule (fractional update rates accumulate; due updates run in fused blocks of k), the
pending training metrics, and the non-finite check.

Batches are normalised by a function the runner passes in (the worker's statistics at update
time), so the learner holds no host statistics of its own.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from harness.checkpoint import flatten, unflatten
from harness.replay import ReplayBuffer
from suites import derive_seed


@functools.lru_cache(maxsize=None)
def policies(algo):
    """(act, eval_act) jitted once per agent module (every Learner of a process shares the
    compiled functions): act(agent, obs (1, O), key, step) -> (1, A) with the key folded by
    the step; eval_act(agent, obs (n, O)) -> deterministic (n, A)."""
    act = jax.jit(lambda agent, obs, key, step: algo.act(
        agent, obs, jax.random.fold_in(key, step)))
    eval_act = jax.jit(lambda agent, obs: algo.act(
        agent, obs, jax.random.PRNGKey(0), deterministic=True))
    return act, eval_act


class RunFailed(RuntimeError):
    """The run stopped for a reason recorded in its status (non-finite values, ...)."""


class Learner:
    def __init__(self, algo, agent_cfg, spec, seed: int, capacity: int, k: int, batch: int,
                 updates_per_step: float, warmup_steps: int):
        self.algo, self.agent_cfg, self.spec = algo, agent_cfg, spec
        self.k, self.batch = k, batch
        self.updates_per_step = updates_per_step  # updates per agent step (rate x repeat)
        self.warmup_steps = warmup_steps
        self.agent = algo.init(agent_cfg, spec, derive_seed(seed, "agent"))
        self.replay = ReplayBuffer(capacity, spec.obs_dim, spec.act_dim)
        self.replay_rng = np.random.default_rng(derive_seed(seed, "replay"))
        self.metrics_rng = np.random.default_rng(derive_seed(seed, "metrics"))
        self.act_key = jax.random.PRNGKey(derive_seed(seed, "act"))
        self.updates = 0
        self.updates_due = 0.0
        self.pending: list[dict] = []      # device metric dicts since the last log row
        self.stability: dict[str, float] = {}
        self._act, self._eval_act = policies(algo)

    # -- acting -----------------------------------------------------------------------------
    @property
    def warming_up(self) -> bool:
        """Random actions until the buffer holds `warmup_steps` transitions."""
        return self.replay.size < self.warmup_steps

    def act(self, policy_obs: np.ndarray, step: int) -> np.ndarray:
        """One stochastic action for a normalised observation (O,), keyed by the step."""
        return np.asarray(self._act(self.agent, policy_obs[None], self.act_key, step))[0]

    def eval_policy(self, policy_obs: np.ndarray) -> np.ndarray:
        """Deterministic actions (n, A) for normalised observations (n, O)."""
        return self._eval_act(self.agent, policy_obs)

    # -- learning ---------------------------------------------------------------------------
    def observe(self, transition: tuple, normalise, frames: int) -> None:
        """Store a transition; then run the updates that became due, in blocks of k."""
        if self.store_transition(transition):
            while self.update_due:
                self.update(normalise, frames)

    def update(self, normalise, frames: int) -> None:
        self.agent, metrics = self.algo.update(self.agent, self.next_block(normalise))
        self.record_update(metrics, frames)

    def next_block(self, normalise) -> dict:
        """The next (k, batch, ...) block: uniform slots from this run's replay RNG,
        normalised with the current statistics."""
        idx = self.replay.sample_indices(self.replay_rng, self.k, self.batch)
        return normalise(self.replay.gather(idx))

    @property
    def update_due(self) -> bool:
        return self.updates_due >= self.k - 1e-9

    def store_transition(self, transition: tuple) -> bool:
        """Add a transition; True when updates may run (the buffer is past warm-up), which
        also accrues this step's updates."""
        self.replay.add(*transition[:5], episode_end=transition[5])
        if self.replay.size >= max(self.warmup_steps, 1):
            self.updates_due += self.updates_per_step
            return True
        return False

    def record_update(self, metrics: dict, frames: int) -> None:
        """Book one block's metrics (a device dict); RunFailed when a loss was not finite."""
        self.updates += self.k
        self.updates_due -= self.k
        self.pending.append(metrics)
        if "health/finite" not in metrics:
            raise RunFailed("the agent's update returned no health/finite metric "
                            "(required by the contract in agents/base.py)")
        if not bool(metrics["health/finite"]):
            bad = [k for k, v in jax.device_get(metrics).items() if not np.isfinite(v)]
            raise RunFailed(f"non-finite {', '.join(bad) or 'values'} at update "
                            f"{self.updates} (frame {frames})")

    def measure_stability(self, normalise) -> None:
        """The agent's norm / effective-LR metrics on one batch (kept for the next row)."""
        if self.replay.size == 0 or not hasattr(self.algo, "stability_metrics"):
            return
        idx = self.replay.sample_indices(self.metrics_rng, 1, self.batch)[0]
        m = self.algo.stability_metrics(self.agent, normalise(self.replay.gather(idx)))
        self.stability = {k: float(v) for k, v in jax.device_get(m).items()}

    def reduce_pending(self) -> dict[str, float]:
        if not self.pending:
            return {}
        host = jax.device_get(self.pending)
        return {k: float(np.mean([m[k] for m in host])) for k in host[0]}

    def take_metrics(self) -> dict[str, float]:
        """The mean of the pending update metrics and the last stability metrics; resets both."""
        row = {**self.reduce_pending(), **self.stability}
        self.pending, self.stability = [], {}
        return row

    # -- state ------------------------------------------------------------------------------
    def state(self, arrays: dict, meta: dict) -> None:
        """Add the learner's state (not the replay data: it goes into segments)."""
        arrays.update(flatten("agent", self.agent))
        meta.update({"updates": self.updates, "updates_due": self.updates_due,
                     "replay": self.replay.state_meta(), "pending": self.reduce_pending(),
                     "pending_count": len(self.pending)})
        meta.setdefault("rng", {}).update({n: getattr(self, n).bit_generator.state
                                           for n in ("replay_rng", "metrics_rng")})

    def restore(self, arrays: dict, meta: dict, segment_arrays) -> None:
        self.agent = unflatten("agent", self.agent, arrays, jax.numpy.asarray)
        if "segments" in meta["replay"]:
            self.replay.load(meta["replay"], segment_arrays)
        else:  # a checkpoint from before append-only segments: the whole buffer in it
            self.replay.load_legacy(arrays, meta["replay"], arrays["obs"])
        for n in ("replay_rng", "metrics_rng"):
            getattr(self, n).bit_generator.state = meta["rng"][n]
        self.updates, self.updates_due = meta["updates"], meta["updates_due"]
        self.pending = [meta["pending"]] * meta["pending_count"] if meta["pending"] else []
