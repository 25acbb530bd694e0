"""`python -m analysis.compare results=<runs or CSV>[,...] reference=<published CSV> [options]`

A reproduction check: does one method in `results=` (our runs, or any long-format CSV) score
like one method in `reference=` (e.g. the paper's simbaV2_utd2.csv), task by task, along
the learning curve, in normalised score? Writes report.md, per_task.csv, verdicts.csv and
curves.png into out/ and prints a short summary. Options (key=value):

  results=          run-store folders and/or long CSVs, comma separated (required)
  reference=        the published long CSV to check against (required)
  method=           method (exp_name) in results (default: the only one; else an error
                    listing them)
  reference_method= method in reference (default: the only one)
  frames=           largest frame to compare (1M, 500k, 1e6 accepted; default: the largest
                    evaluation frame both sides have)
  tasks=            suite name(s) or tasks, comma separated (default: every task on both sides)
  out=              output folder (default: compare); checked before anything is loaded
  reps=             bootstrap repetitions (default 2000)
  seed=             bootstrap seed (default 0)

Rules (docs/reproduction-check.md has the reasoning):
* Frames: a side's value at frame F is each run's evaluation at F or, when its grid skips F,
  its last evaluation in [F - 0.5% F, F] (analysis.scores.score_at, the tables' rule). F runs
  over both sides' evaluation steps; only frames where both sides have runs are compared, and
  one evaluation is never used for two frames.
* Per (task, frame): diff = mean normalised score of ours - of the reference, with a 95%
  bootstrap percentile interval: seeds resampled within each side independently (whole
  curves), each side's resampled means rescaled by sqrt(n/(n-1)) (the plain bootstrap
  understates a mean's variance by (n-1)/n), and the interval's arms widened by
  t(0.975, df)/z(0.975), df the Welch-Satterthwaite degrees of freedom (few seeds: the
  spread itself is uncertain). A side with one seed has no spread: it borrows the other
  side's (is that one run within the other side's seed-to-seed variation?), df = n_other - 1.
* Verdict per task, at its last common frame <= frames=: consistent when the interval holds
  0, better / worse when it lies above / below 0. "consistent" is absence of evidence, not
  equivalence: see min_detectable_diff = (t(0.975, df) + t(0.80, df)) x SE, the difference
  this check finds with 80% power (about 2.8 x SE with many seeds).
* Aggregate: mean and IQM over tasks of the per-task differences, with a stratified bootstrap
  interval (the same resamples), widened the same way.

Exit status: 0 when it ran (whatever the verdicts), 2 on bad input (nothing is written).
"""

from __future__ import annotations

import io
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from harness.cli import UsageError, check_choice, check_keys, check_output_dir, split_kv

KEYS = ("results", "reference", "method", "reference_method", "frames", "tasks", "out", "reps",
        "seed")
VERDICTS = ("consistent", "better", "worse")
POWER = 0.80            # power the minimum detectable difference is quoted at
PER_TASK_COLUMNS = ["task", "domain", "frame", "ours_n", "ref_n", "ours_mean", "ref_mean",
                    "diff", "ci_low", "ci_high", "verdict"]
VERDICT_COLUMNS = ["task", "domain", "frame", "ours_n", "ref_n", "diff", "ci_low", "ci_high",
                   "verdict", "min_detectable_diff", "ours_mean", "ref_mean", "ours_sd",
                   "ref_sd", "se", "df", "frames_compared", "frames_flagged", "note"]
OUT_FILES = ("report.md", "per_task.csv", "verdicts.csv", "curves.png")


@dataclass
class Options:
    results: list[str]
    reference: list[str]
    method: str | None
    reference_method: str | None
    frames: int | None
    tasks: str | None
    out: Path
    reps: int
    seed: int


def parse_args(argv: list[str]) -> Options:
    from analysis.make_figures import _frames, _int   # one parser for frames and counts

    kv = split_kv(argv)
    check_keys(kv, KEYS)
    for key, what in (("results", "run-store folders or long CSVs, comma separated"),
                      ("reference", "the published long CSV to check against")):
        if not kv.get(key):
            raise UsageError(f"{key}= is required ({what}); valid keys: {', '.join(KEYS)}")
    check_output_dir("out", kv.get("out", "compare"))   # before anything is loaded
    frames = _frames("frames", kv["frames"]) if "frames" in kv else None
    return Options(
        results=[p.strip() for p in kv["results"].split(",") if p.strip()],
        reference=[p.strip() for p in kv["reference"].split(",") if p.strip()],
        method=kv.get("method") or None,
        reference_method=kv.get("reference_method") or None,
        frames=frames,
        tasks=kv.get("tasks") or None,
        out=Path(kv.get("out", "compare")),
        reps=_int("reps", kv.get("reps", "2000"), 1),
        seed=_int("seed", kv.get("seed", "0"), 0),
    )


# -- inputs ----------------------------------------------------------------------------------

def one_method(res, chosen: str | None, key: str, where: str):
    """`res` (analysis.load.Results) restricted to one method: `chosen`, or the only one."""
    methods = res.methods
    if not methods:
        raise UsageError(f"{where} holds no evaluations")
    if chosen is None:
        if len(methods) > 1:
            raise UsageError(f"{where} holds several methods ({', '.join(methods)}); choose one "
                             f"with {key}=")
        chosen = methods[0]
    check_choice(key, chosen, methods)
    ev = res.evals.loc[res.evals["method"] == chosen].reset_index(drop=True)
    runs = res.runs.loc[res.runs["method"] == chosen].reset_index(drop=True)
    return replace(res, evals=ev, runs=runs, methods=[chosen]), chosen


def _task_order(tasks) -> list[str]:
    """Registry order for the 57 tasks, then the others alphabetically."""
    import suites

    order = {t: i for i, t in enumerate(suites.TASKS)}
    return sorted(tasks, key=lambda t: (order.get(t, len(order)), t))


def _names(tasks, n: int = 8) -> str:
    tasks = _task_order(tasks)
    return ", ".join(tasks[:n]) + (f", ... ({len(tasks)} in all)" if len(tasks) > n else "")


def select_tasks(spec: str | None, ours: set[str], ref: set[str]) -> tuple[list[str], list[str]]:
    """(tasks to compare, notes). `spec`: suite names / tasks, comma separated, or None for
    every task both sides have. A requested task missing on one side is left out with a
    note; a name that is neither a task, a suite nor a task in the files is an error."""
    import suites
    from suites.registry import RegistryError

    both = ours & ref
    notes: list[str] = []
    if spec is None:
        if not both:
            raise UsageError(f"results and reference share no task: results has "
                             f"{_names(ours)}; reference has {_names(ref)}")
        return _task_order(both), notes
    wanted: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in ours | ref:          # also tasks outside the 57, as spelled in the files
            wanted.append(item)
            continue
        try:
            wanted += [t.name for t in suites.resolve(item)]
        except RegistryError as e:
            raise UsageError(f"tasks=: {e}; tasks on both sides: {_names(both) or 'none'}"
                             ) from None
    wanted = list(dict.fromkeys(wanted))
    for side, have in (("results", ours), ("reference", ref)):
        miss = [t for t in wanted if t not in have]
        if miss:
            notes.append(f"not compared, no runs in {side}: {_names(miss)}")
    keep = [t for t in wanted if t in both]
    if not keep:
        raise UsageError(f"no task of tasks={spec} has runs on both sides: results has "
                         f"{_names(ours & set(wanted)) or 'none of them'}, reference has "
                         f"{_names(ref & set(wanted)) or 'none of them'}; tasks on both "
                         f"sides: {_names(both) or 'none'}")
    return _task_order(keep), notes


# -- frames ----------------------------------------------------------------------------------

def frame_table(res, frames) -> pd.DataFrame:
    """Every scored run at every frame in `frames`: rows (task, domain, seed, frame, norm,
    score_step), norm in normalised score, score_step the evaluation step used (frames).
    One `scores.score_at` per frame, so matching is the tables' rule (tolerance, reached)."""
    from analysis import scores

    parts = []
    for f in frames:
        sc = scores.score_at(res, int(f)).scores
        if len(sc):
            parts.append(sc[["task", "domain", "seed", "norm", "score_step"]].assign(
                frame=int(f)))
    cols = ["task", "domain", "seed", "frame", "norm", "score_step"]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def common_frames(ours: pd.DataFrame, ref: pd.DataFrame) -> dict[str, list[int]]:
    """task -> ascending frames where both sides have runs (`frame_table` rows). Walking down
    from the last frame, a frame whose runs use the very evaluations (seed, step) that an
    already kept frame uses on either side is dropped: one evaluation never counts twice."""
    def keys(df):
        return {k: frozenset(zip(g["seed"], g["score_step"]))
                for k, g in df.groupby(["task", "frame"], sort=False)}

    ko, kr = keys(ours), keys(ref)
    out: dict[str, list[int]] = {}
    for task in pd.unique(ours["task"]):
        cand = sorted({f for t, f in ko if t == task} & {f for t, f in kr if t == task},
                      reverse=True)
        kept, used_o, used_r = [], set(), set()
        for f in cand:
            a, b = ko[(task, f)], kr[(task, f)]
            if a in used_o or b in used_r:
                continue
            kept.append(int(f))
            used_o.add(a)
            used_r.add(b)
        if kept:
            out[task] = sorted(kept)
    return out


def own_frames(df: pd.DataFrame) -> dict[str, list[int]]:
    """task -> frames at which every run of that side was evaluated exactly (its own grid)."""
    exact = df.assign(ok=df["score_step"] == df["frame"]).groupby(["task", "frame"])["ok"].all()
    out: dict[str, list[int]] = {}
    for (t, f), ok in exact.items():
        if ok:
            out.setdefault(t, []).append(int(f))
    return {t: sorted(v) for t, v in out.items()}


# -- statistics ------------------------------------------------------------------------------

@dataclass
class SideStats:
    """One side on the (tasks, frames) grid; arrays (tasks, frames) unless stated."""

    n: np.ndarray        # seeds with a value (int)
    mean: np.ndarray     # mean normalised score (NaN where n == 0)
    var: np.ndarray      # sample variance over seeds, ddof=1 (NaN where n < 2)
    boot: np.ndarray     # (reps, tasks, frames) resampled means, variance-corrected


def runs_matrix(df: pd.DataFrame, tasks: list[str], frames: list[int]):
    """`frame_table` rows -> RunScores with axes (runs, tasks, frames) (NaN: no value)."""
    from analysis.matrix import RunScores

    runs = df[["task", "seed"]].drop_duplicates().reset_index(drop=True)
    rid = pd.MultiIndex.from_frame(runs).get_indexer(pd.MultiIndex.from_frame(
        df[["task", "seed"]]))
    col = {f: i for i, f in enumerate(frames)}
    fi = df["frame"].map(col)
    keep = fi.notna().to_numpy()
    curves = np.full((len(runs), len(frames)), np.nan)
    curves[rid[keep], fi[keep].astype(int).to_numpy()] = df["norm"].to_numpy(float)[keep]
    return RunScores.from_long(runs.assign(norm=0.0), tasks=tasks, value="norm", curves=curves)


def side_stats(rs, reps: int, rng: np.random.Generator) -> SideStats:
    """Means over seeds per (task, frame) and their bootstrap: `rs` (RunScores) has axes
    (runs, tasks, frames); seeds are resampled within each task with their whole curve
    (bootstrap.resample_counts), a frame's mean uses the resampled seeds that have a value
    there. The resampled means are then rescaled around the mean by sqrt(n / (n - 1)): the
    plain bootstrap's variance of a mean is (n - 1)/n * s^2/n, this makes it s^2/n."""
    from analysis import bootstrap

    v = np.asarray(rs.scores, float)
    if v.ndim != 3:
        raise ValueError(f"scores must have axes (runs, tasks, frames); got shape {v.shape}")
    ok = ~np.isnan(v)
    x = np.where(ok, v, 0.0)
    n = ok.sum(axis=0)                                               # (T, P)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=0) / n
        dev = np.where(ok, v - mean[None], 0.0)
        var = np.where(n >= 2, (dev ** 2).sum(axis=0) / np.maximum(n - 1, 1), np.nan)
        counts = bootstrap.resample_counts(rs.n_per_task, rs.n_runs, reps, rng).astype(float)
        num = np.einsum("bnt,ntp->btp", counts, x)
        den = np.einsum("bnt,ntp->btp", counts, ok.astype(float))
        boot = num / den                                             # (B, T, P)
        c = np.sqrt(np.where(n >= 2, n / np.maximum(n - 1, 1), 1.0))
        boot = mean[None] + c[None] * (boot - mean[None])
    # No spread: the mean itself, exactly (no rounding noise that could move a verdict).
    flat = (n >= 1) & ~(var > 0)
    boot[:, flat] = mean[flat]
    return SideStats(n, mean, var, boot)


def _borrow(target: SideStats, other: SideStats, other_values: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """(tasks, frames) mask of the cells where `target` has one seed and `other` two or more:
    there `target.boot` becomes its one value plus a rescaled deviation of one random seed of
    the other side, x + sqrt(n/(n-1)) (y_j - mean_y): one run drawn with the other side's
    spread. `other_values`: the other side's (runs, tasks, frames) scores."""
    cells = (target.n == 1) & (other.n >= 2)
    reps = target.boot.shape[0]
    for t, p in zip(*np.nonzero(cells)):
        y = other_values[:, t, p]
        y = y[~np.isnan(y)]
        c = np.sqrt(len(y) / (len(y) - 1))
        j = rng.integers(0, len(y), reps)
        target.boot[:, t, p] = target.mean[t, p] + c * (y[j] - y.mean())
    return cells


@dataclass
class Comparison:
    """Everything the outputs are made from. Arrays are (tasks, frames) over `tasks` and
    `frames` (the union of the frames used; NaN / 0 where a task has no value)."""

    method: str
    reference_method: str
    tasks: list[str]
    domains: list[str]
    frames: list[int]
    common: dict[str, list[int]]          # task -> compared frames (ascending)
    ref_grid: dict[str, list[int]]        # task -> the reference's own evaluation frames
    final: dict[str, int]                 # task -> frame of its verdict
    limit: int                            # frames= or the largest common frame
    ours: SideStats
    ref: SideStats
    diff: np.ndarray
    low: np.ndarray
    high: np.ndarray
    se: np.ndarray
    df: np.ndarray
    mdd: np.ndarray
    borrowed_ours: np.ndarray             # bool: our one seed borrowed the reference's spread
    borrowed_ref: np.ndarray
    ref_low: np.ndarray                   # 95% interval of the reference mean (figure)
    ref_high: np.ndarray
    per_task: pd.DataFrame
    verdicts: pd.DataFrame
    aggregate: dict
    ours_curves: pd.DataFrame             # our evaluations: task, seed, env_step, norm
    x_max: int                            # right end of the figure's frame axis
    notes: list[str] = field(default_factory=list)


def _t(q: float, df):
    from scipy import stats

    df = np.asarray(df, float)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(df), np.nan, stats.t.ppf(q, np.where(np.isnan(df), 1, df)))


def _widen(point, boot, k):
    """Percentile interval (bootstrap.CI_LEVEL) of `boot` (reps, ...) around `point` (...),
    each arm multiplied by k (...): the Welch t / z small-sample expansion."""
    from analysis import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # all-NaN cells stay NaN
        iv = bootstrap._interval(np.asarray(point)[None], boot)
    return point + k * (iv.low - point), point + k * (iv.high - point)


def verdict_of(low, high) -> np.ndarray:
    """'better' where the interval lies above 0, 'worse' below, else 'consistent' (an interval
    that cannot be computed, one seed on each side, counts as consistent: nothing detected)."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    out = np.full(low.shape, "consistent", dtype=object)
    out[low > 0] = "better"
    out[high < 0] = "worse"
    return out


def compare(ours_res, ref_res, *, tasks: str | None = None, frames: int | None = None,
            reps: int = 2000, seed: int = 0, method: str | None = None,
            reference_method: str | None = None, where=("results", "reference")) -> Comparison:
    """The check on two loaded `Results` (rules in the module docstring)."""
    from scipy import stats

    from analysis import aggregates, bootstrap, scores

    ours_res, method = one_method(ours_res, method, "method", where[0])
    ref_res, reference_method = one_method(ref_res, reference_method, "reference_method",
                                           where[1])
    task_list, notes = select_tasks(tasks, set(ours_res.evals["task"]),
                                    set(ref_res.evals["task"]))

    def sub(res):
        ev = res.evals.loc[res.evals["task"].isin(task_list)]
        return replace(res, evals=ev.reset_index(drop=True),
                       runs=res.runs.loc[res.runs["task"].isin(task_list)].reset_index(drop=True))

    ours_res, ref_res = sub(ours_res), sub(ref_res)
    steps = np.union1d(ours_res.evals["env_step"].unique(), ref_res.evals["env_step"].unique())
    if frames is not None:
        steps = steps[steps <= frames]
    lo_t, lr_t = frame_table(ours_res, steps), frame_table(ref_res, steps)
    common = common_frames(lo_t, lr_t)
    if not common:
        def grid(df):
            s = np.sort(df["env_step"].unique())
            return (", ".join(f"{x:,}" for x in s[:6]) + (f", ... ({len(s)} steps)"
                                                          if len(s) > 6 else "")) or "none"
        lim = f" at or below frames={frames:,}" if frames is not None else ""
        raise UsageError(f"results and reference share no evaluation frame{lim} on the tasks "
                         f"compared ({_names(task_list)}): results evaluated at "
                         f"{grid(ours_res.evals)}; reference at {grid(ref_res.evals)} (an "
                         f"evaluation counts for frame F when it lies in [F - 0.5% F, F])")
    lost = [t for t in task_list if t not in common]
    if lost:
        notes.append(f"not compared, no common evaluation frame: {_names(lost)}")
    task_list = [t for t in task_list if t in common]
    limit = frames if frames is not None else max(max(v) for v in common.values())
    final = {t: max(common[t]) for t in task_list}

    # The figure shows our runs up to their last evaluation (<= frames=), and the reference
    # over the same range at its own evaluation frames.
    last_ours = int(ours_res.evals["env_step"].max())
    x_max = frames if frames is not None else max(limit, last_ours)
    grid_r = {t: [f for f in v if f <= x_max] for t, v in own_frames(lr_t).items()
              if t in common}
    frame_axis = sorted({f for t in task_list for f in common[t] + grid_r.get(t, [])})
    lo_t = lo_t.loc[lo_t["task"].isin(task_list) & lo_t["frame"].isin(frame_axis)]
    lr_t = lr_t.loc[lr_t["task"].isin(task_list) & lr_t["frame"].isin(frame_axis)]
    rs_o = runs_matrix(lo_t, task_list, frame_axis)
    rs_r = runs_matrix(lr_t, task_list, frame_axis)
    so = side_stats(rs_o, reps, bootstrap.rng_for(seed, "compare", "ours", method))
    sr = side_stats(rs_r, reps, bootstrap.rng_for(seed, "compare", "reference",
                                                  reference_method))
    b_o = _borrow(so, sr, rs_r.scores, bootstrap.rng_for(seed, "compare", "borrow", "ours"))
    b_r = _borrow(sr, so, rs_o.scores, bootstrap.rng_for(seed, "compare", "borrow", "ref"))

    # Variance of the difference and its Welch-Satterthwaite degrees of freedom; a borrowed
    # spread is the other side's estimate, so both terms share its df (n_other - 1).
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(b_o, sr.var, so.var) / np.maximum(so.n, 1)
        b = np.where(b_r, so.var, sr.var) / np.maximum(sr.n, 1)
        a = np.where(so.n >= 1, a, np.nan)
        b = np.where(sr.n >= 1, b, np.nan)
        var = a + b
        den = np.where(b_o, var ** 2 / (sr.n - 1), np.where(
            b_r, var ** 2 / (so.n - 1),
            a ** 2 / np.maximum(so.n - 1, 1) + b ** 2 / np.maximum(sr.n - 1, 1)))
        dfree = np.where(var > 0, var ** 2 / den, np.inf)
        dfree = np.where(np.isnan(var), np.nan, dfree)
        se = np.sqrt(var)
    z = stats.norm.ppf(1 - (1 - bootstrap.CI_LEVEL) / 2)
    k = _t(1 - (1 - bootstrap.CI_LEVEL) / 2, dfree) / z
    diff = so.mean - sr.mean
    dboot = so.boot - sr.boot
    low, high = _widen(diff, dboot, k)
    low = np.where(np.isnan(var), np.nan, low)
    high = np.where(np.isnan(var), np.nan, high)
    mdd = (_t(1 - (1 - bootstrap.CI_LEVEL) / 2, dfree) + _t(POWER, dfree)) * se
    with np.errstate(invalid="ignore", divide="ignore"):
        df_r = np.where(sr.n >= 2, sr.n - 1, np.nan)
        ref_low, ref_high = _widen(sr.mean, sr.boot, _t(0.975, df_r) / z)

    verdict = verdict_of(low, high)
    domains = [str(lo_t.loc[lo_t["task"] == t, "domain"].iloc[0]) for t in task_list]
    fidx = {f: i for i, f in enumerate(frame_axis)}
    rows, vrows = [], []
    for ti, t in enumerate(task_list):
        for f in common[t]:
            p = fidx[f]
            rows.append({"task": t, "domain": domains[ti], "frame": f,
                         "ours_n": int(so.n[ti, p]), "ref_n": int(sr.n[ti, p]),
                         "ours_mean": so.mean[ti, p], "ref_mean": sr.mean[ti, p],
                         "diff": diff[ti, p], "ci_low": low[ti, p], "ci_high": high[ti, p],
                         "verdict": verdict[ti, p]})
        p = fidx[final[t]]
        flagged = sum(verdict[ti, fidx[f]] != "consistent" for f in common[t])
        note = []
        if so.n[ti, p] == 1 and sr.n[ti, p] == 1:
            note.append("1 seed on each side: no spread to test against (nothing detectable)")
        elif b_o[ti, p]:
            note.append("1 seed in results: its spread is the reference's (assumed)")
        elif b_r[ti, p]:
            note.append("1 seed in reference: its spread is ours (assumed)")
        elif so.n[ti, p] == 2:
            note.append("2 seeds in results: our spread is barely estimated (wide interval)")
        if final[t] != limit:
            note.append(f"last common frame {final[t]:,} < {limit:,}")
        vrows.append({"task": t, "domain": domains[ti], "frame": final[t],
                      "ours_n": int(so.n[ti, p]), "ref_n": int(sr.n[ti, p]),
                      "diff": diff[ti, p], "ci_low": low[ti, p], "ci_high": high[ti, p],
                      "verdict": verdict[ti, p], "min_detectable_diff": mdd[ti, p],
                      "ours_mean": so.mean[ti, p], "ref_mean": sr.mean[ti, p],
                      "ours_sd": np.sqrt(so.var[ti, p]), "ref_sd": np.sqrt(sr.var[ti, p]),
                      "se": se[ti, p], "df": dfree[ti, p],
                      "frames_compared": len(common[t]), "frames_flagged": int(flagged),
                      "note": "; ".join(note)})
    per_task = pd.DataFrame(rows, columns=PER_TASK_COLUMNS)
    verdicts = pd.DataFrame(vrows, columns=VERDICT_COLUMNS)

    # Aggregate over tasks at each task's verdict frame: mean and IQM of the differences
    # (each task weighs once), intervals from the same resamples, widened with the
    # Welch-Satterthwaite df of the mean of the T differences.
    ti = np.arange(len(task_list))
    pi = np.array([fidx[final[t]] for t in task_list])
    d_t, boot_t = diff[ti, pi], dboot[:, ti, pi]                     # (T,), (B, T)
    var_t, den_t = var[ti, pi], np.where(var[ti, pi] > 0, den[ti, pi], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        df_agg = np.nansum(var_t) ** 2 / np.nansum(den_t) if np.nansum(den_t) > 0 else np.inf
    k_agg = float(_t(1 - (1 - bootstrap.CI_LEVEL) / 2, df_agg)) / z
    vals = np.concatenate([d_t[:, None], boot_t.T], axis=1)[None]     # (1 run, T, 1 + B)
    one = np.ones((1, 1, len(task_list)))
    agg = {"n_tasks": len(task_list), "df": float(df_agg),
           "n_untestable": int(np.isnan(var_t).sum()),
           "counts": {v: int((verdicts["verdict"] == v).sum()) for v in VERDICTS}}
    stats_ = {"mean": aggregates.mean} | ({"iqm": aggregates.iqm} if len(task_list) >= 4
                                          else {})
    for name, fn in stats_.items():
        s = fn(vals, one)[0]                                         # (1 + B,)
        lo_, hi_ = _widen(np.float64(s[0]), s[1:, None], k_agg)
        agg[name] = (float(s[0]), float(np.ravel(lo_)[0]), float(np.ravel(hi_)[0]))
    if len(set(final.values())) > 1:
        notes.append("tasks end at different common frames (see `frame` in verdicts.csv); "
                     "the aggregate pools each task's last common frame")

    ev = ours_res.evals.loc[ours_res.evals["task"].isin(task_list)
                            & (ours_res.evals["env_step"] <= x_max)]
    ours_curves = ev[["task", "seed", "env_step"]].assign(
        norm=scores.normalise(ev["task"], ev["value"].to_numpy(float))).reset_index(drop=True)
    return Comparison(method, reference_method, task_list, domains, frame_axis, common, grid_r,
                      final, int(limit), so, sr, diff, low, high, se, dfree, mdd, b_o, b_r,
                      ref_low, ref_high, per_task, verdicts, agg, ours_curves, int(x_max),
                      notes)


# -- outputs ---------------------------------------------------------------------------------

VERDICT_COLORS = {"consistent": "black", "better": "tab:blue", "worse": "tab:red"}
OURS_COLOR, REF_COLOR = "tab:orange", "0.35"


def curves_png(cmp: Comparison) -> bytes:
    """One panel per task: our seeds (thin) and their mean (thick) at our evaluation steps,
    over the reference mean and its 95% interval at the reference's own evaluation frames;
    normalised score vs frames. The title gives the verdict and the seed counts."""
    import matplotlib.lines
    import matplotlib.patches
    import matplotlib.pyplot as plt

    from analysis import figures, scores

    n = len(cmp.tasks)
    ncols = min(8, int(np.ceil(np.sqrt(n))))
    fig, axes, spare = figures._grid(n, ncols, max(2.4, 7.0 / ncols), 2.1, sharex=True)
    fidx = {f: i for i, f in enumerate(cmp.frames)}
    verdict = dict(zip(cmp.verdicts["task"], cmp.verdicts["verdict"]))
    n_of = {r.task: (r.ours_n, r.ref_n) for r in cmp.verdicts.itertuples()}
    by_task = dict(tuple(cmp.ours_curves.groupby("task", sort=False)))
    x_right = max(cmp.x_max, 1)
    for i, (ax, t) in enumerate(zip(axes, cmp.tasks)):
        ti = cmp.tasks.index(t)
        g = cmp.ref_grid.get(t, [])
        if g:
            x = np.asarray(g, float)
            p = [fidx[f] for f in g]
            m, lo, hi = cmp.ref.mean[ti, p], cmp.ref_low[ti, p], cmp.ref_high[ti, p]
            ax.plot(x, m, color=REF_COLOR, lw=1.3, marker="o" if len(x) <= 25 else None, ms=2)
            if len(x) > 1:
                ax.fill_between(x, lo, hi, color=REF_COLOR, alpha=0.25, lw=0)
            else:
                ax.errorbar(x, m, yerr=[m - lo, hi - m], color=REF_COLOR, capsize=3, lw=1)
        part = by_task.get(t)
        if part is not None:
            runs = [(s["env_step"].to_numpy(), s["norm"].to_numpy())
                    for _, s in part.sort_values("env_step").groupby("seed")]
            for x, y in runs:
                ax.plot(x, y, color=OURS_COLOR, lw=0.6, alpha=0.45,
                        marker="o" if len(x) == 1 else None, ms=2)
            c = scores.combine_runs(runs)
            if c is not None and c.n_runs > 1:
                ax.plot(c.steps, c.mean, color=OURS_COLOR, lw=1.8, ls="-" if c.shared else "--")
        ax.axvline(cmp.final[t], color="0.6", lw=0.6, ls=":")
        v = verdict[t]
        no, nr = n_of[t]
        ax.set_title(f"{t}\n{v} ({no} vs {nr} seeds)", fontsize=8, color=VERDICT_COLORS[v])
        figures._frames_axis(ax, x_right)
        if cmp.domains[ti] == "myosuite":
            figures._clamp_unit(ax)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("normalised score", fontsize=8)
        if i + ncols >= n:
            ax.set_xlabel("frames", fontsize=8)
    handles = [matplotlib.lines.Line2D([], [], color=OURS_COLOR, lw=0.8, alpha=0.6),
               matplotlib.lines.Line2D([], [], color=OURS_COLOR, lw=2),
               matplotlib.patches.Patch(color=REF_COLOR, alpha=0.4),
               matplotlib.lines.Line2D([], [], color="0.6", lw=0.8, ls=":")]
    labels = [f"{cmp.method}: one line per seed", f"{cmp.method}: mean over seeds",
              f"{cmp.reference_method} (reference): mean, 95% CI of the mean",
              "frame of the verdict"]
    figures._finish(fig, f"Reproduction check: {cmp.method} vs {cmp.reference_method} "
                    f"(normalised score; verdict at each task's last common frame)", spare,
                    handles, labels, ncol=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=figures.DPI)
    plt.close(fig)
    return buf.getvalue()


def _fmt(x: float, signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(point, low, high) -> str:
    if not np.isfinite(low):
        return f"{_fmt(point, True)} (no interval)"
    return f"{_fmt(point, True)} [{_fmt(low, True)}, {_fmt(high, True)}]"


def _counts(values) -> str:
    """'5' when every task has 5 seeds, else '1-5 (median 3)'."""
    v = np.asarray(values, int)
    if v.min() == v.max():
        return str(int(v.min()))
    return f"{int(v.min())}-{int(v.max())} (median {float(np.median(v)):g})"


def multiplicity(counts: dict, n_testable: int) -> tuple[float, float]:
    """(tasks expected to be flagged by chance alone, P(at least as many flagged as were)):
    independent tasks, each flagged with probability 1 - CI_LEVEL when nothing differs."""
    from scipy import stats

    from analysis import bootstrap

    p = 1 - bootstrap.CI_LEVEL
    k = counts["better"] + counts["worse"]
    return p * n_testable, float(stats.binom.sf(k - 1, n_testable, p)) if n_testable else 1.0


def summary_lines(cmp: Comparison) -> list[str]:
    """The few lines printed to stdout (also the report's summary)."""
    v = cmp.verdicts
    agg = cmp.aggregate
    c = agg["counts"]
    frames = sorted(set(v["frame"]))
    at = (f"{frames[0]:,} frames" if len(frames) == 1
          else f"their last common frame ({frames[0]:,}-{frames[-1]:,})")
    testable = agg["n_tasks"] - agg["n_untestable"]
    expected, p = multiplicity(c, testable)
    lines = [f"{cmp.method} (results) vs {cmp.reference_method} (reference): {len(v)} task(s) "
             f"at {at}; seeds per task: {_counts(v['ours_n'])} vs {_counts(v['ref_n'])}",
             f"verdicts: {c['consistent']} consistent, {c['better']} better, {c['worse']} worse "
             f"(by chance alone ~{expected:.1f} of {testable} would be flagged at 95%; "
             f"P(>= {c['better'] + c['worse']} flagged | no real difference) = {p:.2f})"]
    agg_line = f"mean difference (ours - reference, normalised): {_ci(*agg['mean'])}"
    if "iqm" in agg:
        agg_line += f"; IQM: {_ci(*agg['iqm'])}"
    lines.append(agg_line)
    return lines


def report_md(cmp: Comparison, opts: Options, command: str, sources: dict) -> str:
    """report.md: summary, what the check can detect, the rules, the per-task table."""
    from analysis import bootstrap
    from analysis.report import md_table

    v = cmp.verdicts
    agg = cmp.aggregate
    c = agg["counts"]
    testable = agg["n_tasks"] - agg["n_untestable"]
    expected, p = multiplicity(c, testable)
    tol = "0.5%"
    L = [f"# Reproduction check: {cmp.method} vs {cmp.reference_method}", "",
         f"Command: `{command}`", "",
         f"- Results: {', '.join(sources['results'])} (method `{cmp.method}`)",
         f"- Reference: {', '.join(sources['reference'])} (method `{cmp.reference_method}`)",
         f"- Frames compared up to {cmp.limit:,}" + (" (frames=)" if opts.frames is not None
                                                     else " (the largest frame both have)"),
         f"- Bootstrap: {opts.reps} repetitions, seed={opts.seed} (same inputs and seed: same "
         f"numbers)", "",
         "## Summary", ""]
    L += [f"- {x}" for x in summary_lines(cmp)] + [""]
    L += [f"- **Multiplicity.** Each task is tested at the 95% level, so even a perfect "
          f"reproduction gets about {100 * (1 - bootstrap.CI_LEVEL):.0f}% of its tasks flagged: "
          f"~{expected:.1f} of {testable} here. {c['better'] + c['worse']} were flagged; the "
          f"chance of at least that many when nothing differs is {p:.2f} (binomial, tasks "
          f"independent). A few flagged tasks are expected; look for many, or for the same "
          f"direction across a domain.", ""]
    if cmp.notes:
        L += ["Notes:", ""] + [f"- {n}" for n in cmp.notes] + [""]

    # What the seeds allow.
    n_o, n_r = v["ours_n"].to_numpy(), v["ref_n"].to_numpy()
    mdd = v["min_detectable_diff"].to_numpy(float)
    fin = mdd[np.isfinite(mdd)]
    L += ["## What this check can and cannot detect", "",
          f"- Seeds per task at the verdict frame: results {_counts(n_o)}, reference "
          f"{_counts(n_r)} (every task's counts are in the table below).",
          "- **Minimum detectable difference** (`min_detectable_diff`): the difference in mean "
          "normalised score this check finds with 80% power at the 5% level, "
          "MDD = (t(0.975, df) + t(0.80, df)) x SE, SE = sqrt(s_ours^2/n_ours + s_ref^2/n_ref) "
          "from the observed seed spreads (s: sample standard deviation), df its "
          "Welch-Satterthwaite degrees of freedom; about 2.8 x SE with many seeds. "
          + (f"Here: median {np.median(fin):.3f}, from {fin.min():.3f} to {fin.max():.3f} over "
             f"tasks. A real difference smaller than that is likely to be missed."
             if len(fin) else "Not computable here (no spread on either side)."),
          "- **consistent** means the interval contains 0: no evidence of a difference at this "
          "sample size. It is not evidence of equality (not an equivalence test); with few "
          "seeds, large differences pass as consistent."]
    one = int((n_o == 1).sum())
    two = int((n_o == 2).sum())
    if one:
        L.append(f"- **{one} task(s) have a single seed in results: there is no spread at all on "
                 "our side.** Its spread is taken from the reference's seeds (assumed equal), "
                 "so the interval is driven entirely by the reference's spread: the check asks "
                 "whether that one run lies within the reference's seed-to-seed variation "
                 "(df = n_ref - 1). Without that assumption one seed cannot be tested at all.")
    if two:
        L.append(f"- {two} task(s) have 2 seeds in results: our spread is barely estimated "
                 "(1 degree of freedom), so the interval is wide (Welch t with df near 1-2) "
                 "and little is detectable; a third seed narrows it a lot.")
    if int((n_r == 1).sum()):
        L.append(f"- {int((n_r == 1).sum())} task(s) have a single reference seed: its spread "
                 "is taken from ours.")
    if agg["n_untestable"]:
        L.append(f"- {agg['n_untestable']} task(s) have one seed on each side: no spread to "
                 "test against; they are reported consistent, but nothing could be detected.")
    L += ["- Not detected by design: a difference in spread or failure rate with the same "
          "mean; differences at intermediate frames (the verdict uses the last common frame; "
          "`frames_flagged` counts frames along the curve whose interval excludes 0, a "
          "descriptive signal: neighbouring frames are correlated and ~5% are flagged by "
          "chance); differences that cancel across tasks in the aggregate.", ""]

    L += ["## Rules", "",
          f"- Normalised scores per domain as in docs/tasks.md (`analysis.scores.normalise`): "
          f"MuJoCo TD3-normalised, DMC return/1000, MyoSuite success rate, HumanoidBench "
          f"success-normalised; tasks outside the 57 are compared on their raw score.",
          f"- Frames: a run's value at frame F is its evaluation at F or, when its grid skips F, "
          f"its last evaluation in [F - {tol} F, F] (the rule of the tables, "
          f"`analysis.scores.score_at`); F runs over both sides' evaluation steps, a frame is "
          f"compared when both sides have runs there, and one evaluation never counts for two "
          f"frames.",
          "- Per (task, frame): diff = mean(ours) - mean(reference) over seeds, with a 95% "
          "bootstrap percentile interval: seeds resampled with replacement within each side "
          "independently (a seed keeps its whole curve), each side's resampled means rescaled "
          "around its mean by sqrt(n/(n-1)) (the plain bootstrap understates the variance of a "
          "mean by (n-1)/n), and both arms of the interval widened by t(0.975, df)/1.96 "
          "(Welch-Satterthwaite df): with 5 seeds a side, the plain percentile interval flags "
          "about 12% of tasks when nothing differs, this one about 5% "
          "(docs/reproduction-check.md).",
          "- Verdict per task at its last common frame <= frames=: `consistent` if the interval "
          "contains 0, else `better` (above 0) or `worse` (below 0).",
          "- Aggregate: mean (and IQM, 25% trimmed, with >= 4 tasks) over tasks of the per-task "
          "differences, each task weighing once; the interval resamples seeds within every "
          "(task, side) stratum with the same resamples as the per-task intervals, widened by "
          f"the t/z factor of the mean's Welch-Satterthwaite df ({agg['df']:.1f}).", ""]

    tab = pd.DataFrame({
        "task": v["task"], "domain": v["domain"], "frame": [f"{f:,}" for f in v["frame"]],
        "seeds (ours/ref)": [f"{a}/{b}" for a, b in zip(v["ours_n"], v["ref_n"])],
        "ours": v["ours_mean"], "reference": v["ref_mean"],
        "diff [95% CI]": [_ci(d, lo, hi) for d, lo, hi in zip(v["diff"], v["ci_low"],
                                                                v["ci_high"])],
        "MDD": v["min_detectable_diff"],
        "verdict": [f"**{x}**" if x != "consistent" else x for x in v["verdict"]],
        "frames flagged": [f"{a}/{b}" for a, b in zip(v["frames_flagged"],
                                                       v["frames_compared"])],
        "note": v["note"]})
    L += ["## Per task", "",
          "Normalised scores at the verdict frame (mean over seeds); `frames flagged`: frames "
          "along the curve whose interval excludes 0, out of those compared. Every compared "
          "frame is in `per_task.csv`, the spreads, SE and df in `verdicts.csv`.", "",
          md_table(tab), "",
          "## Curves", "", "![curves](curves.png)", ""]
    return "\n".join(L)


def run(opts: Options, command: str = "", draw: bool = True) -> dict:
    """Load, compare, write out/ (atomically, only once everything is computed)."""
    from analysis.load import LoadError, load_results
    from harness.store import atomic_write_bytes, atomic_write_text

    t0 = time.perf_counter()
    ours = load_results(opts.results)
    try:
        ref = load_results(opts.reference)
    except LoadError as e:
        raise LoadError(f"reference: {e}") from None
    cmp = compare(ours, ref, tasks=opts.tasks, frames=opts.frames, reps=opts.reps,
                  seed=opts.seed, method=opts.method, reference_method=opts.reference_method)
    sources = {"results": opts.results, "reference": opts.reference}
    text = report_md(cmp, opts, command, sources)
    png = curves_png(cmp) if draw else None
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "per_task.csv", cmp.per_task.to_csv(index=False,
                                                                 float_format="%.6g"))
    atomic_write_text(out / "verdicts.csv", cmp.verdicts.to_csv(index=False,
                                                                float_format="%.6g"))
    if png is not None:
        atomic_write_bytes(out / "curves.png", png)
    atomic_write_text(out / "report.md", text)
    return {"comparison": cmp, "report": out / "report.md",
            "notes": ours.notes + ref.notes, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    from analysis.load import run_command

    done = run_command("analysis.compare", __doc__, sys.argv[1:] if argv is None else argv,
                       parse_args, run)
    if done is None:
        return 0
    result = done[1]
    cmp = result["comparison"]
    for n in cmp.notes + result["notes"]:
        print(f"note: {n}", file=sys.stderr)
    for line in summary_lines(cmp):
        print(line)
    print(f"report: {result['report']}  ({result['seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
