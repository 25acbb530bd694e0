"""`RunScores`: normalised scores with an explicit (runs, tasks) axis contract.

rliable's functions take a matrix of shape (num_runs, num_tasks). The SimbaV2 notebooks passed
(num_tasks, num_runs) instead, which silently transposes the median and the bootstrap's
stratification (docs/tasks.md). Every statistic here goes through `RunScores`, which

* stores `scores` with axes (runs, tasks[, points]) and the task label of every column,
* refuses a matrix whose column count does not match the task labels (the usual symptom of a
  transposed input) with a ValueError that names the expected axes,
* allows unequal seed counts per task: column t holds its n_t runs in rows 0..n_t-1 (seed
  labels ascending) and NaN below; `n_per_task` says how many are real.

`points` is an optional trailing axis (e.g. evaluation frames of a learning curve) that rides
along with the runs: resampling a run resamples its whole curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

AXES = ("runs", "tasks")


def check_axes(shape: tuple[int, ...], n_tasks: int) -> None:
    """Raise ValueError unless `shape` is (runs, tasks[, points]) with `n_tasks` columns."""
    if len(shape) < 2:
        raise ValueError(f"scores must have axes {AXES}[, points]; got shape {shape}")
    if shape[1] != n_tasks:
        hint = (" - it looks transposed (tasks, runs): pass (runs, tasks), e.g. scores.T"
                if shape[0] == n_tasks else "")
        raise ValueError(f"scores must have axes {AXES}: expected {n_tasks} columns (one per "
                         f"task label), got shape {shape}{hint}")


@dataclass(frozen=True)
class RunScores:
    scores: np.ndarray          # (runs, tasks[, points]); NaN below each task's n_t runs
    tasks: tuple[str, ...]      # label of every column (axis 1)
    seeds: np.ndarray           # (runs, tasks) seed label of every cell; -1 for padding
    n_per_task: np.ndarray      # (tasks,) number of real runs per task, >= 1

    def __post_init__(self):
        s = np.asarray(self.scores)
        n_tasks = len(self.tasks)
        check_axes(s.shape, n_tasks)
        if self.seeds.shape != s.shape[:2] or self.n_per_task.shape != (n_tasks,):
            raise ValueError("seeds must be (runs, tasks) and n_per_task (tasks,)")
        if n_tasks and self.n_per_task.min() < 1:
            raise ValueError("every task needs at least one run")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_matrix(cls, scores, tasks, seeds=None) -> "RunScores":
        """From a (runs, tasks[, points]) array; NaN marks a missing run (it is moved to the
        bottom of its column). `tasks` labels the columns and is what makes a transposed input
        detectable."""
        s = np.asarray(scores, dtype=float)
        tasks = tuple(tasks)
        check_axes(s.shape, len(tasks))
        n, t = s.shape[:2]
        valid = ~np.isnan(s.reshape(n, t, -1)).all(axis=2)
        if seeds is None:
            seeds = np.broadcast_to(np.arange(n)[:, None], (n, t))
        seeds = np.asarray(seeds)
        out = np.full_like(s, np.nan)
        out_seeds = np.full((n, t), -1, dtype=np.int64)
        counts = valid.sum(axis=0)
        for j in range(t):
            rows = np.flatnonzero(valid[:, j])
            rows = rows[np.argsort(seeds[rows, j], kind="stable")]
            out[: len(rows), j] = s[rows, j]
            out_seeds[: len(rows), j] = seeds[rows, j]
        keep = max(int(counts.max()) if t else 0, 1)
        return cls(out[:keep], tasks, out_seeds[:keep], counts.astype(np.int64))

    @classmethod
    def from_long(cls, df: pd.DataFrame, tasks=None, value: str = "norm",
                  curves: np.ndarray | None = None) -> "RunScores":
        """From long rows (`task`, `seed`, `value`): one row per run. `tasks` fixes the column
        order (default: order of appearance). `curves`, if given, is (len(df), points) aligned
        with df's rows and becomes the trailing axis; its last point need not equal `value`."""
        if tasks is None:
            tasks = list(dict.fromkeys(df["task"]))
        tasks = tuple(tasks)
        col = {t: i for i, t in enumerate(tasks)}
        tcode = df["task"].map(col).to_numpy()
        if np.isnan(tcode.astype(float)).any():
            raise ValueError("rows for tasks outside `tasks`")
        tcode = tcode.astype(int)
        seed = df["seed"].to_numpy().astype(np.int64)
        order = np.lexsort((seed, tcode))
        tcode, seed = tcode[order], seed[order]
        counts = np.bincount(tcode, minlength=len(tasks))
        if (counts == 0).any():
            missing = [t for t, c in zip(tasks, counts) if c == 0]
            raise ValueError(f"no runs for task(s) {', '.join(missing)}")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        row = np.arange(len(tcode)) - starts[tcode]
        n_max = int(counts.max())
        vals = df[value].to_numpy(dtype=float)[order]
        if curves is not None:
            curves = np.asarray(curves, dtype=float)[order]
            out = np.full((n_max, len(tasks), curves.shape[1]), np.nan)
            out[row, tcode] = curves
        else:
            out = np.full((n_max, len(tasks)), np.nan)
            out[row, tcode] = vals
        seeds = np.full((n_max, len(tasks)), -1, dtype=np.int64)
        seeds[row, tcode] = seed
        return cls(out, tasks, seeds, counts.astype(np.int64))

    # -- views ----------------------------------------------------------------------------
    @property
    def n_runs(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def valid(self) -> np.ndarray:
        """(runs, tasks) True where a real run sits."""
        return np.arange(self.n_runs)[:, None] < self.n_per_task[None, :]

    def truncate(self, n: int | np.ndarray) -> "RunScores":
        """Keep the first n runs (lowest seed labels) of every task; n may be per task."""
        n = np.minimum(np.broadcast_to(np.asarray(n), self.n_per_task.shape), self.n_per_task)
        keep = int(n.max())
        s = self.scores[:keep].copy()
        seeds = self.seeds[:keep].copy()
        drop = np.arange(keep)[:, None] >= n[None, :]
        s[drop] = np.nan
        seeds[drop] = -1
        return RunScores(s, self.tasks, seeds, n.astype(np.int64))

    def concat(self, other: "RunScores") -> "RunScores":
        """Side by side along the task axis (padding the shorter one with NaN)."""
        n = max(self.n_runs, other.n_runs)

        def pad(x, fill):
            extra = n - x.shape[0]
            if extra == 0:
                return x
            return np.concatenate([x, np.full((extra, *x.shape[1:]), fill, dtype=x.dtype)])

        return RunScores(np.concatenate([pad(self.scores, np.nan), pad(other.scores, np.nan)],
                                        axis=1),
                         self.tasks + other.tasks,
                         np.concatenate([pad(self.seeds, -1), pad(other.seeds, -1)], axis=1),
                         np.concatenate([self.n_per_task, other.n_per_task]))

    def select(self, tasks) -> "RunScores":
        idx = [self.tasks.index(t) for t in tasks]
        sub = RunScores(self.scores[:, idx], tuple(tasks), self.seeds[:, idx],
                        self.n_per_task[idx])
        return sub.truncate(sub.n_per_task)  # drops all-padding rows

    def to_rliable(self) -> np.ndarray:
        """A full (runs, tasks) matrix for rliable: every task truncated to the smallest seed
        count (rliable cannot take ragged input). Only the final scores, not curves."""
        if self.scores.ndim != 2:
            raise ValueError("to_rliable takes final scores (runs, tasks), not curves")
        return self.truncate(int(self.n_per_task.min())).scores.copy()
