"""Uniform replay of raw transitions, each observation stored once; samples a whole (k, batch)
block for one fused update; saved as append-only segments.

Layout. Transitions are numbered t = 0, 1, ... in the order they are added and live in ring
slots t % capacity (action, reward, terminated, `obs_ref`). Observations are rows h = 0, 1, ...
of a second ring (slot h % obs_capacity): transition t's observation is row obs_ref[t] and its
next observation is row obs_ref[t] + 1. Consecutive steps of an episode share rows, and each
episode adds one extra row for its first observation, so an episode of n steps uses n + 1 rows
instead of the 2n a (obs, next_obs) layout needs: host memory per seed about halves (the
numbers for the largest task are in docs/checkpoints.md). An episode's final observation (after
a termination or a truncation) is its last row; the next episode starts on a new row.

The observation ring holds every row a live transition refers to. It starts at capacity plus
an eighth, which covers episodes longer than ~8 steps once the buffer wraps (and everything
while it has not, the paper's setting); with shorter episodes it grows, keeping every live row.

Segments. `pending_segment()` returns the transitions and rows added since the last
`commit_segment()` (only those still live): what a checkpoint must append so that the
segments on disk, replayed in order by `load()`, rebuild the buffer exactly. A save therefore
costs the data added since the previous save, not the whole buffer.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")  # what `gather` returns
STEP_FIELDS = ("action", "reward", "terminated", "obs_ref")      # stored per transition


class ReplayBuffer:
    """Raw transitions (observations float32 as the env gives them, rewards unscaled, float64):
    normalisation happens at sampling time with the current statistics."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity = int(capacity)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.step = {
            "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros((capacity,), np.float64),
            "terminated": np.zeros((capacity,), np.float32),
            "obs_ref": np.zeros((capacity,), np.int64),
        }
        self.obs_capacity = self.capacity + max(64, self.capacity // 8)
        self.obs = np.zeros((self.obs_capacity, obs_dim), np.float32)
        self.added = 0          # transitions ever added
        self.rows = 0           # observation rows ever written
        self.open = False       # the last transition's next observation starts the next step
        self.saved = (0, 0)     # (transitions, rows) already in committed segments
        self.segments: list[dict] = []  # committed segment records, oldest first

    # -- adding -----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return min(self.added, self.capacity)

    def _oldest_live_row(self, first_new_row: int) -> int:
        """The lowest row a live transition refers to once transition `added` is in."""
        oldest = self.added + 1 - self.capacity
        if self.added == 0 or oldest >= self.added:   # none yet, or capacity 1
            return first_new_row
        return int(self.step["obs_ref"][max(oldest, 0) % self.capacity])

    def _grow(self, low: int, needed: int) -> None:
        """A larger observation ring holding rows [low, rows) at their new slots."""
        cap = max(needed, self.obs_capacity + self.obs_capacity // 2)
        new = np.zeros((cap, self.obs_dim), np.float32)
        live = np.arange(low, self.rows)
        new[live % cap] = self.obs[live % self.obs_capacity]
        self.obs, self.obs_capacity = new, cap

    def add(self, obs, action, reward: float, next_obs, terminated: bool,
            episode_end: bool) -> None:
        """One transition. `episode_end` (terminated or truncated): `next_obs` is the
        episode's last observation and the next `add` starts a new episode with its `obs`."""
        new_rows = 1 if self.open else 2
        # the rows from the oldest live transition's observation to this one's next
        # observation must all fit in the ring
        low = self._oldest_live_row(self.rows - 1 if self.open else self.rows)
        if self.rows + new_rows - low > self.obs_capacity:
            self._grow(low, self.rows + new_rows - low)
        if not self.open:
            self.obs[self.rows % self.obs_capacity] = obs
            self.rows += 1
        ref = self.rows - 1
        self.obs[self.rows % self.obs_capacity] = next_obs
        self.rows += 1
        i = self.added % self.capacity
        s = self.step
        s["action"][i] = action
        s["reward"][i] = reward
        s["terminated"][i] = terminated
        s["obs_ref"][i] = ref
        self.added += 1
        self.open = not episode_end

    # -- sampling ---------------------------------------------------------------------------
    def sample_indices(self, rng: np.random.Generator, k: int, batch: int) -> np.ndarray:
        """(k, batch) uniform slot indices, drawn at once from the run's replay RNG."""
        return rng.integers(0, self.size, (k, batch))

    def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The transitions at slots `idx` (any shape S): obs, next_obs (S, O), action (S, A),
        reward, terminated (S,)."""
        s = self.step
        ref = s["obs_ref"][idx]
        return {"obs": self.obs[ref % self.obs_capacity],
                "action": s["action"][idx], "reward": s["reward"][idx],
                "next_obs": self.obs[(ref + 1) % self.obs_capacity],
                "terminated": s["terminated"][idx]}

    @property
    def nbytes(self) -> int:
        """Host bytes of the stored data (both rings)."""
        return self.obs.nbytes + sum(a.nbytes for a in self.step.values())

    # -- segments ---------------------------------------------------------------------------
    def _live_window(self) -> tuple[int, int]:
        """(first live transition, first live row)."""
        t0 = max(0, self.added - self.capacity)
        r0 = int(self.step["obs_ref"][t0 % self.capacity]) if self.added else self.rows
        return t0, r0

    def pending_segment(self) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(record, arrays) of what was added since the last commit and is still live; None
        when nothing was. record: name, t = [a, b) transitions, rows = [c, d)."""
        t0, r0 = self._live_window()
        a, c = max(self.saved[0], t0), max(self.saved[1], r0)
        b, d = self.added, self.rows
        if a >= b and c >= d:
            return None
        slots = np.arange(a, b) % self.capacity
        arrays = {f: self.step[f][slots] for f in STEP_FIELDS}
        arrays["obs"] = self.obs[np.arange(c, d) % self.obs_capacity]
        return {"name": f"seg_{a:012d}_{b:012d}", "t": [a, b], "rows": [c, d]}, arrays

    def commit_segment(self, record: dict) -> None:
        """`record` (with its checksums) is on disk: later segments start after it, and the
        records no live data needs any more are dropped from the list."""
        self.saved = (record["t"][1], record["rows"][1])
        t0, r0 = self._live_window()
        self.segments = [r for r in self.segments if r["t"][1] > t0 or r["rows"][1] > r0]
        self.segments.append(record)

    def state_meta(self) -> dict:
        return {"capacity": self.capacity, "obs_capacity": self.obs_capacity,
                "added": self.added, "rows": self.rows, "open": self.open,
                "saved": list(self.saved), "segments": [dict(r) for r in self.segments]}

    def load(self, meta: dict, segment_arrays) -> None:
        """Rebuild from `meta` (state_meta at the save) and `segment_arrays(record) -> arrays`
        for every record in meta["segments"], applied oldest first (later data overwrites the
        ring slots of older data, as it did when it was added)."""
        if meta["capacity"] != self.capacity:
            raise ValueError(f"checkpoint replay capacity {meta['capacity']} != {self.capacity}")
        if meta["obs_capacity"] != self.obs_capacity:
            self.obs_capacity = int(meta["obs_capacity"])
            self.obs = np.zeros((self.obs_capacity, self.obs_dim), np.float32)
        for rec in meta["segments"]:
            arrays = segment_arrays(rec)
            (a, b), (c, d) = rec["t"], rec["rows"]
            slots = np.arange(a, b) % self.capacity
            for f in STEP_FIELDS:
                self.step[f][slots] = arrays[f]
            self.obs[np.arange(c, d) % self.obs_capacity] = arrays["obs"]
        self.added, self.rows = int(meta["added"]), int(meta["rows"])
        self.open = bool(meta["open"])
        self.saved = tuple(meta["saved"])
        self.segments = [dict(r) for r in meta["segments"]]

    def load_legacy(self, arrays: dict[str, np.ndarray], meta: dict, current_obs) -> None:
        """A buffer saved whole by earlier versions (`replay/<field>` arrays of the filled slots,
        meta size/pos/capacity, obs and next_obs per slot): re-added oldest first, each at its
        old slot, so that sampling continues exactly. An episode ended where a transition's
        next observation is not the following transition's observation (for the newest one:
        not the runner's `current_obs`)."""
        if meta["capacity"] != self.capacity:
            raise ValueError(f"checkpoint replay capacity {meta['capacity']} != {self.capacity}")
        size, pos = int(meta["size"]), int(meta["pos"])
        full = size == self.capacity
        order = np.arange(pos, pos + size) % self.capacity if full else np.arange(size)
        self.added = pos if full else 0  # so that transition t lands in its old slot t % cap
        obs, nxt = arrays["replay/obs"], arrays["replay/next_obs"]
        for j, i in enumerate(order):
            following = obs[order[j + 1]] if j + 1 < len(order) else current_obs
            self.add(obs[i], arrays["replay/action"][i], arrays["replay/reward"][i], nxt[i],
                     bool(arrays["replay/terminated"][i]),
                     episode_end=not np.array_equal(nxt[i], following))
