"""From evaluations to scores: the score of a run at a frame budget, incomplete runs, curves,
per-task tables, and the per-(method, group) score matrices the statistics run on.

Score at `frames` = F (the paper's single final evaluation, docs/tasks.md):
* the run's evaluation at env_step == F; if its evaluation grid skips F (some baselines
  evaluate every 16,666 frames: 999,960 then 1,016,626), the last evaluation in
  [F - tol, F], tol = `frames_tol` (default 0.5% of F);
* and the run must have got to F: an evaluation at or after F, or a store run whose
  status.json says "completed".
Anything else is incomplete: listed with its last evaluated frame and why, and left out of every
table and figure (never mixed in with a score from an earlier frame).

Groups: the five domains, `all` (the 57 tasks) and `hbench-hard` (the paper's 5-task
scaling subset); `other` (tasks outside the 57, raw scores) when asked for.
* A domain is computed from whatever tasks of it a method has (`n_tasks` says how many; the
  note says "partial" when some are missing), with every complete seed of every task.
* `all` needs all 57 tasks (else NaN and a note). As in the paper's Table 1, each domain is
  first truncated to its own smallest seed count (lowest seed labels kept), then all
  (task, seed) entries are pooled. `all_truncate=global` truncates every task to the smallest
  seed count over all 57 instead (what some re-aggregations did; docs/published-results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import suites
from analysis.load import OTHER, Results
from analysis.matrix import RunScores

DOMAINS = ("mujoco", "dmc-em", "dmc-hard", "myosuite", "hbench")
ALL = "all"
SUBSETS = ("hbench-hard",)
GROUPS = (*DOMAINS, ALL, *SUBSETS)
GROUP_TASKS: dict[str, tuple[str, ...]] = {g: tuple(t.name for t in suites.resolve(g))
                                           for g in (*DOMAINS, *SUBSETS)}
GROUP_TASKS[ALL] = tuple(t for d in DOMAINS for t in GROUP_TASKS[d])
KEY = ["method", "task", "seed"]
CURVE_POINTS = 20   # learning-curve grid: F/20, 2F/20, ..., F (plus 0 for per-task plots)


def default_tol(frames: int) -> int:
    return int(round(0.005 * frames))


@dataclass
class Scored:
    scores: pd.DataFrame       # one row per complete run (see score_at)
    incomplete: pd.DataFrame   # method, task, domain, seed, last_frames, state, reason, source
    frames: int
    tol: int


def _normaliser(tasks: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per row: the registry's constants; (0, 1) for tasks outside the 57."""
    low, high = {}, {}
    for t in pd.unique(tasks):
        task = suites.TASKS.get(t)
        if task is None:
            low[t], high[t] = 0.0, 1.0
        else:
            low[t] = 0.0 if task.random_score is None else task.random_score
            high[t] = 1.0 if task.reference_score is None else task.reference_score
    return tasks.map(low).to_numpy(float), tasks.map(high).to_numpy(float)


def normalise(tasks: pd.Series, raw) -> np.ndarray:
    """Vectorised Task.normalise; raw values pass through for tasks outside the 57."""
    low, high = _normaliser(tasks)
    raw = np.asarray(raw, dtype=float)
    if raw.ndim == 2:
        low, high = low[:, None], high[:, None]
    return (raw - low) / (high - low)


def score_at(results: Results, frames: int, tol: int | None = None) -> Scored:
    """Score every run at `frames` (rule in the module docstring)."""
    tol = default_tol(frames) if tol is None else int(tol)
    ev = results.evals
    win = ev.loc[(ev["env_step"] >= frames - tol) & (ev["env_step"] <= frames)]
    pick = (win.sort_values("env_step", kind="stable")
            .drop_duplicates(KEY, keep="last")[KEY + ["env_step", "value"]]
            .rename(columns={"env_step": "score_step", "value": "raw"}))
    runs = results.runs.merge(pick, on=KEY, how="left")
    for c in ("state", "reason"):
        if c not in runs:
            runs[c] = None
    has = runs["raw"].notna().to_numpy()
    completed = (runs["state"] == "completed").to_numpy()
    reached = (runs["last_frames"].to_numpy() >= frames) | (completed & has)
    ok = has & reached

    bad = runs.loc[~ok].copy()
    reasons = []
    for r in bad.itertuples():
        state = f" (state: {r.state}" + (f": {r.reason}" if r.reason else "") + ")" \
            if isinstance(r.state, str) else ""
        if r.last_frames == 0 and np.isnan(r.raw):
            reasons.append(f"no evaluation yet{state}")
        elif r.last_frames < frames and not (completed[r.Index] and has[r.Index]):
            reasons.append(f"stopped at {r.last_frames} < {frames} frames{state}")
        else:
            reasons.append(f"no evaluation within {tol} frames before {frames}{state}")
    bad["reason"] = reasons
    incomplete = bad[["method", "task", "domain", "seed", "last_frames", "state", "reason",
                      "source"]].reset_index(drop=True)

    good = runs.loc[ok].copy()
    good["norm"] = normalise(good["task"], good["raw"].to_numpy())
    good["score_step"] = good["score_step"].astype("int64")
    keep = [c for c in ["method", "task", "domain", "seed", "raw", "norm", "score_step",
                        "source", "kind", "state", "agent", "width", "depth", "utd", "wall_time_s",
                        "device", "run_dir", "has_metrics"] if c in good]
    return Scored(good[keep].reset_index(drop=True), incomplete, frames, tol)


def curve_grid(frames: int) -> np.ndarray:
    """0, F/20, ..., F (integers)."""
    return np.round(np.linspace(0, frames, CURVE_POINTS + 1)).astype(np.int64)


def run_curves(results: Results, scored: Scored, grid: np.ndarray) -> np.ndarray:
    """Raw learning curve of every scored run on `grid`: (len(scored.scores), len(grid)).

    Each run's evaluations are linearly interpolated onto the grid within the frames it
    evaluated (NaN outside), so methods with different evaluation grids line up. The value at
    F is the run's score at F (same rule as the tables); the value at frame 0 is the run's
    first evaluation when it lies in [0, tol] (some files evaluate at step 1, not 0), else
    NaN (the statistics then use the runs that have one). For the sample-efficiency figure
    only; per-task learning curves use `task_curves` (real evaluation steps)."""
    sc = scored.scores
    out = np.full((len(sc), len(grid)), np.nan)
    if not len(sc):
        return out
    rid = sc[KEY].assign(rid=np.arange(len(sc)))
    ev = results.evals.merge(rid, on=KEY, how="inner")[["rid", "env_step", "value"]]
    ev = ev.sort_values(["rid", "env_step"], kind="stable")
    if not len(ev):
        return out
    r = ev["rid"].to_numpy()
    x = ev["env_step"].to_numpy(float)
    y = ev["value"].to_numpy(float)
    cuts = np.flatnonzero(np.diff(r)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(r)]])
    gx = grid.astype(float)
    for s, e in zip(starts, ends):
        out[r[s]] = np.interp(gx, x[s:e], y[s:e], left=np.nan, right=np.nan)
        if grid[0] == 0 and x[s] <= scored.tol:
            out[r[s], 0] = y[s]
    if grid[-1] == scored.frames:
        out[:, -1] = sc["raw"].to_numpy(float)
    return out


@dataclass
class Curve:
    """A learning curve of several runs at the steps where they were evaluated / logged."""

    steps: np.ndarray     # (points,) ascending
    mean: np.ndarray      # (points,) mean over the runs that cover the step
    std: np.ndarray       # population std over those runs (0 with one run)
    low: np.ndarray       # min over those runs
    high: np.ndarray      # max over those runs
    n_runs: int
    shared: bool          # True: every run has a value at every step (all points are real)


def combine_runs(runs: list[tuple]) -> Curve | None:
    """Combine runs given as (steps, values) at the steps where they happened.

    * The runs share their steps (the usual case): mean / std / min / max over runs at each
      step; every point is a real evaluation (or log point) of every run.
    * They do not: each run is linearly interpolated onto the union of all runs' steps, within
      its own first..last step (never extrapolated), and the statistics are taken over the runs
      that cover each step; `shared` is False so a figure can say so.
    NaN values are dropped first (a metric not computed at every log point)."""
    clean = []
    for x, y in runs:
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = ~(np.isnan(x) | np.isnan(y))
        x, y = x[ok], y[ok]
        if not len(x):
            continue
        xu, first = np.unique(x, return_index=True)     # sorted; first value per step
        clean.append((xu, y[first]))
    if not clean:
        return None
    union = np.unique(np.concatenate([x for x, _ in clean]))
    shared = all(len(x) == len(union) for x, _ in clean)
    mat = np.full((len(clean), len(union)), np.nan)
    for i, (x, y) in enumerate(clean):
        mat[i] = y if shared else np.interp(union, x, y, left=np.nan, right=np.nan)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Curve(union, np.nanmean(mat, 0), np.nanstd(mat, 0), np.nanmin(mat, 0),
                     np.nanmax(mat, 0), len(clean), shared)


def task_curves(results: Results, scored: Scored) -> dict[tuple[str, str], Curve]:
    """Raw learning curve of every (method, task) over its scored runs, at the evaluation steps
    in [0, F] (no grid: real evaluations are the vertices; rule in `combine_runs`)."""
    sc = scored.scores
    if not len(sc):
        return {}
    ev = results.evals.merge(sc[KEY], on=KEY, how="inner")
    ev = ev.loc[ev["env_step"] <= scored.frames, KEY + ["env_step", "value"]]
    ev = ev.sort_values(KEY + ["env_step"], kind="stable")
    out = {}
    for (m, t), part in ev.groupby(["method", "task"], sort=False):
        runs = [(g["env_step"].to_numpy(), g["value"].to_numpy())
                for _, g in part.groupby("seed", sort=True)]
        c = combine_runs(runs)
        if c is not None:
            out[(m, t)] = c
    return out


def per_task_table(scored: Scored) -> pd.DataFrame:
    """Per method and task: seeds and mean / spread of raw and normalised scores (std is the
    population std over seeds, the usual per-task spread), plus incomplete-run counts."""
    sc = scored.scores
    g = sc.groupby(["method", "task"], sort=False)
    tab = g.agg(domain=("domain", "first"), n_seeds=("seed", "size"),
                raw_mean=("raw", "mean"), raw_std=("raw", lambda v: v.std(ddof=0)),
                raw_min=("raw", "min"), raw_max=("raw", "max"),
                norm_mean=("norm", "mean"), norm_std=("norm", lambda v: v.std(ddof=0)),
                norm_min=("norm", "min"), norm_max=("norm", "max"),
                seeds=("seed", lambda v: " ".join(map(str, sorted(v))))).reset_index()
    inc = scored.incomplete.groupby(["method", "task"], sort=False).agg(
        n_incomplete=("seed", "size"), dom=("domain", "first")).reset_index()
    tab = tab.merge(inc, on=["method", "task"], how="outer")
    tab["domain"] = tab["domain"].fillna(tab["dom"])
    tab = tab.drop(columns=["dom"])
    tab["n_seeds"] = tab["n_seeds"].fillna(0).astype(int)
    tab["n_incomplete"] = tab["n_incomplete"].fillna(0).astype(int)
    tab["metric"] = [suites.TASKS[t].metric if t in suites.TASKS else "" for t in tab["task"]]
    tab["frames"] = scored.frames
    # Rows in method order (as loaded), then the registry's task order.
    m_order = {m: i for i, m in enumerate(dict.fromkeys(
        list(sc["method"]) + list(scored.incomplete["method"])))}
    t_order = {t: i for i, t in enumerate(suites.TASKS)}
    tab = tab.assign(_m=tab["method"].map(m_order),
                     _t=tab["task"].map(lambda t: t_order.get(t, len(t_order))))
    tab = tab.sort_values(["_m", "_t", "task"]).drop(columns=["_m", "_t"])
    cols = ["method", "domain", "task", "metric", "n_seeds", "n_incomplete", "raw_mean",
            "raw_std", "raw_min", "raw_max", "norm_mean", "norm_std", "norm_min", "norm_max",
            "seeds", "frames"]
    return tab[cols]


@dataclass
class GroupScores:
    final: RunScores | None          # (runs, tasks) normalised scores at F
    curves: RunScores | None         # (runs, tasks, points) same runs, normalised curves
    n_expected: int                  # tasks in the group (0 for `other`)
    note: str


def group_scores(scored: Scored, method: str, group: str, curves: np.ndarray | None = None,
                 all_truncate: str = "domain") -> GroupScores:
    """The score matrix of one method on one group (rules in the module docstring).
    `curves` is the (len(scored.scores), points) normalised curve array, or None."""
    sc = scored.scores
    mine = sc.index[sc["method"] == method]
    rows = sc.loc[mine]
    if group == OTHER:
        part = rows.loc[rows["domain"] == OTHER]
        if not len(part):
            return GroupScores(None, None, 0, "no tasks outside the 57")
        f, c = _build(part, curves, None)
        return GroupScores(f, c, 0, "raw scores (no normalisation constants)")
    expected = GROUP_TASKS[group]
    have = [t for t in expected if t in set(rows["task"])]
    if not have:
        return GroupScores(None, None, len(expected), "no complete runs")
    if group != ALL:
        f, c = _build(rows.loc[rows["task"].isin(have)], curves, have)
        note = "" if len(have) == len(expected) else f"partial: {len(have)}/{len(expected)} tasks"
        return GroupScores(f, c, len(expected), note)
    if len(have) < len(expected):
        per = ", ".join(f"{d} {sum(t in have for t in GROUP_TASKS[d])}/{len(GROUP_TASKS[d])}"
                        for d in DOMAINS)
        return GroupScores(None, None, len(expected),
                           f"not computed: needs all {len(expected)} tasks ({per})")
    final = crv = None
    parts = []
    for d in DOMAINS:
        f, c = _build(rows.loc[rows["domain"] == d], curves, GROUP_TASKS[d])
        parts.append((f, c))
    if all_truncate == "global":
        n_min = min(int(f.n_per_task.min()) for f, _ in parts)
    for f, c in parts:
        n = int(f.n_per_task.min()) if all_truncate == "domain" else n_min
        f = f.truncate(n)
        c = c.truncate(n) if c is not None else None
        final = f if final is None else final.concat(f)
        if c is not None:
            crv = c if crv is None else crv.concat(c)
    seeds = sorted({int(f.n_per_task.min()) for f, _ in parts})
    note = (f"each domain truncated to its smallest seed count ({'/'.join(map(str, seeds))})"
            if all_truncate == "domain" else "every task truncated to the smallest seed count")
    return GroupScores(final, crv, len(expected), note)


def _build(rows: pd.DataFrame, curves, tasks) -> tuple[RunScores, RunScores | None]:
    f = RunScores.from_long(rows, tasks=tasks, value="norm")
    c = None
    if curves is not None:
        c = RunScores.from_long(rows, tasks=tasks, curves=curves[rows.index.to_numpy()])
    return f, c
