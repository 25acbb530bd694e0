"""Aggregate statistics over runs x tasks, evaluated for many bootstrap resamples at once.

Every statistic takes
  values   (runs, tasks[, points])  a `RunScores.scores` array (NaN = no run / no value)
  weights  (B, runs, tasks)         how many times each run is counted in each of B resamples
and returns (B[, points]). The point estimate is the same function with B = 1 and
`weights = RunScores.valid` (every real run once); a bootstrap resample of seeds within each
task is a weight matrix whose column t sums to n_t (see analysis.bootstrap). Writing the
statistics on weights avoids materialising B resampled copies of the data.

Definitions (they equal rliable's on a full (runs, tasks) matrix; tests check this):
  mean             mean over all (task, run) entries: the paper's Table 1 rule
  iqm              25%-trimmed mean over all (task, run) entries (scipy.stats.trim_mean cut)
  median           median over tasks of the per-task mean
  optimality_gap   gamma - mean(min(score, gamma)) over all entries, gamma = 1
  profile(tau)     fraction of (task, run) entries with score > tau
With unequal seed counts, "all entries" weighs a task by its seed count, as the paper's mean
does; the `all` group truncates seeds per domain first (analysis.scores).
"""

from __future__ import annotations

import numpy as np

# Bound the size of (B, entries, points) temporaries; larger batches are split.
_CHUNK_ELEMS = 500_000


def _prepare(values: np.ndarray, weights: np.ndarray):
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    if w.ndim == 2:
        w = w[None]
    if w.shape[1:] != v.shape[:2]:
        raise ValueError(f"weights (B, runs, tasks) {w.shape} do not match values "
                         f"(runs, tasks[, points]) {v.shape}")
    n, t = v.shape[:2]
    pts = v.shape[2:]
    v2 = v.reshape(n * t, -1)                  # (entries, P)
    ok = ~np.isnan(v2)
    return v2, ok, w.reshape(w.shape[0], n * t), pts


def _finish(x: np.ndarray, pts) -> np.ndarray:
    return x.reshape(x.shape[0], *pts) if pts else x.reshape(x.shape[0])


def mean(values, weights) -> np.ndarray:
    v2, ok, w, pts = _prepare(values, weights)
    num = w @ np.where(ok, v2, 0.0)
    den = w @ ok.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finish(num / den, pts)


def optimality_gap(values, weights, gamma: float = 1.0) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return gamma - mean(np.minimum(v, gamma), weights)  # NaN stays NaN through minimum


def median(values, weights) -> np.ndarray:
    """Median over tasks of the weighted per-task mean."""
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    if w.ndim == 2:
        w = w[None]
    n, t = v.shape[:2]
    v3 = v.reshape(n, t, -1)
    ok = ~np.isnan(v3)
    num = np.einsum("bnt,ntp->btp", w, np.where(ok, v3, 0.0))
    den = np.einsum("bnt,ntp->btp", w, ok.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_task = num / den                   # (B, tasks, P)
    if np.isnan(per_task).any():
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = np.nanmedian(per_task, axis=1)
    else:
        out = np.median(per_task, axis=1)
    return _finish(out, v.shape[2:])


def iqm(values, weights, cut: float = 0.25) -> np.ndarray:
    """Interquartile mean of the weighted multiset of entries.

    For each resample, the multiset is the data with entry i repeated w_i times. With the data
    sorted once (per point), S(k) = sum of the k smallest items of the multiset follows from
    cumulative weights C and cumulative weighted values: find the entry j where C reaches k,
    then S(k) = CV[j-1] + (k - C[j-1]) * v[j]. The IQM is (S(hi) - S(lo)) / (hi - lo) with
    lo = floor(cut * N), hi = N - lo: exactly scipy.stats.trim_mean on the expanded resample.
    NaN entries sort last with weight counted out of N, so they are never reached."""
    v2, ok, w, pts = _prepare(values, weights)
    e, p = v2.shape
    order = np.argsort(np.where(ok, v2, np.inf), axis=0, kind="stable")    # (E, P)
    vs = np.take_along_axis(np.where(ok, v2, 0.0), order, axis=0)
    total = w @ ok.astype(float)                                          # (B, P)
    lo = np.floor(cut * total + 1e-9)
    hi = total - lo
    out = np.empty((w.shape[0], p))
    step = max(1, _CHUNK_ELEMS // max(1, e * p))
    for b0 in range(0, w.shape[0], step):
        sl = slice(b0, b0 + step)
        ws = w[sl][:, order]                                              # (b, E, P)
        c = np.cumsum(ws, axis=1)
        cv = np.cumsum(ws * vs[None], axis=1)
        s = []
        for k in (lo[sl], hi[sl]):
            j = (c < k[:, None, :]).sum(axis=1)                           # (b, P)
            prev = np.maximum(j - 1, 0)[:, None, :]
            c_prev = np.where(j > 0, np.take_along_axis(c, prev, 1)[:, 0], 0.0)
            cv_prev = np.where(j > 0, np.take_along_axis(cv, prev, 1)[:, 0], 0.0)
            v_j = vs[np.minimum(j, e - 1), np.arange(p)[None, :]]
            s.append(cv_prev + (k - c_prev) * v_j)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[sl] = (s[1] - s[0]) / (hi[sl] - lo[sl])
    return _finish(out, pts)


def profile(values, weights, taus) -> np.ndarray:
    """Fraction of entries with score > tau: (B, len(taus)); final scores only."""
    v2, ok, w, pts = _prepare(values, weights)
    if pts:
        raise ValueError("profile takes final scores (runs, tasks), not curves")
    taus = np.asarray(taus, dtype=float)
    above = (np.where(ok, v2, -np.inf) > taus[None, :]).astype(float)   # (E, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ above) / (w @ ok.astype(float))


STATISTICS = {"mean": mean, "iqm": iqm, "median": median, "optimality_gap": optimality_gap}
