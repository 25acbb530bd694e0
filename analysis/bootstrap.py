"""Seeded stratified bootstrap over runs within each task, interval estimates, comparisons.

Resampling: for every task t, draw n_t runs with replacement from that task's n_t runs (the
seeds available for it; tasks with more seeds keep more), independently per task: the
stratified bootstrap of Agarwal et al. (2021), with strata = tasks. A resample is stored as
a count matrix (reps, runs, tasks) (see analysis.aggregates).

Determinism: every bootstrap draws from its own `numpy.random.Generator`, seeded from the
user's `seed=` plus labels naming what is resampled (method, group, ...). The same seed gives
bit-identical intervals; adding or removing a method does not change another method's
intervals. (rliable's `random_state` does not control all of its resampling, and its global
NumPy state would make results depend on call order; nothing here uses it.)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from analysis import aggregates
from analysis.matrix import RunScores

CI_LEVEL = 0.95


def rng_for(seed: int, *labels: str) -> np.random.Generator:
    """A generator determined by `seed` and the labels (stable across runs and platforms)."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(lab).encode()) for lab in labels]
    return np.random.default_rng(np.random.SeedSequence(words))


def resample_counts(n_per_task: np.ndarray, n_rows: int, reps: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(reps, n_rows, tasks) counts: for each rep and task, how often each of the task's
    n_t runs was drawn in n_t draws with replacement. Rows >= n_t are always 0."""
    n = np.asarray(n_per_task, dtype=np.int64)
    t = len(n)
    idx = rng.integers(0, n[None, None, :], size=(reps, n_rows, t))   # draw j for task t
    used = np.broadcast_to(np.arange(n_rows)[None, :, None] < n[None, None, :], idx.shape)
    r = np.broadcast_to(np.arange(reps)[:, None, None], idx.shape)
    tt = np.broadcast_to(np.arange(t)[None, None, :], idx.shape)
    key = ((r * n_rows + idx) * t + tt)[used]
    return np.bincount(key, minlength=reps * n_rows * t).reshape(reps, n_rows, t)


@dataclass(frozen=True)
class Interval:
    point: np.ndarray   # () or (points,)
    low: np.ndarray
    high: np.ndarray


def _interval(point, boot) -> Interval:
    a = (1 - CI_LEVEL) / 2
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanpercentile(boot, [100 * a, 100 * (1 - a)], axis=0) if np.isnan(
            boot).any() else np.percentile(boot, [100 * a, 100 * (1 - a)], axis=0)
    return Interval(np.asarray(point[0]), np.asarray(lo), np.asarray(hi))


def interval_estimates(rs: RunScores, reps: int, rng: np.random.Generator,
                       statistics: dict | None = None, curves: RunScores | None = None,
                       curve_statistic: str = "iqm", taus=None) -> dict[str, Interval]:
    """Point estimates and percentile CIs (CI_LEVEL) of each statistic on `rs`.

    With `curves` (same runs and tasks as `rs`, plus a points axis) the same resamples also
    give `curve_statistic` along the curve under the key "curve". With `taus`, the score
    distribution (performance profile) under "profile"."""
    statistics = statistics or aggregates.STATISTICS
    counts = resample_counts(rs.n_per_task, rs.n_runs, reps, rng)
    ones = rs.valid.astype(float)[None]
    out = {}
    for name, fn in statistics.items():
        out[name] = _interval(fn(rs.scores, ones), fn(rs.scores, counts))
    if curves is not None:
        if curves.scores.shape[:2] != rs.scores.shape or not np.array_equal(
                curves.seeds, rs.seeds):
            raise ValueError("curves must hold the same runs as the final scores")
        fn = aggregates.STATISTICS[curve_statistic]
        out["curve"] = _interval(fn(curves.scores, ones), fn(curves.scores, counts))
    if taus is not None:
        out["profile"] = _interval(aggregates.profile(rs.scores, ones, taus),
                                   aggregates.profile(rs.scores, counts, taus))
    return out


def probability_of_improvement(x: RunScores, y: RunScores, reps: int,
                               rng: np.random.Generator) -> Interval:
    """P(X > Y): for each shared task, the probability that a random run of X scores higher
    than a random run of Y (ties count 1/2), averaged over tasks with equal weight. Runs of X
    and of Y are resampled independently within each task."""
    shared = [t for t in x.tasks if t in y.tasks]
    if not shared:
        raise ValueError("the two methods share no task")
    x, y = x.select(shared), y.select(shared)
    xv, yv = x.scores, y.scores                          # (nx, T), (ny, T)
    with np.errstate(invalid="ignore"):
        gt = (xv[:, None, :] > yv[None, :, :]).astype(float)
        eq = (xv[:, None, :] == yv[None, :, :]).astype(float)
    s = np.nan_to_num(gt + 0.5 * eq)                     # (nx, ny, T); padding compares False
    norm = (x.n_per_task * y.n_per_task).astype(float)   # (T,)

    def poi(wx, wy):
        per_task = np.einsum("bit,ijt,bjt->bt", wx, s, wy) / norm
        return per_task.mean(axis=1)

    cx = resample_counts(x.n_per_task, x.n_runs, reps, rng).astype(float)
    cy = resample_counts(y.n_per_task, y.n_runs, reps, rng).astype(float)
    point = poi(x.valid.astype(float)[None], y.valid.astype(float)[None])
    return _interval(point, poi(cx, cy))
