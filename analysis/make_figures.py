"""`python -m analysis.make_figures results=<path>[,<path>...] out=<dir> [options]`

Reads published long-format result files and/or our run store, scores every run at a frame
budget, and writes summary.csv, per_task.csv, scores.csv, incomplete.csv, figures (PNG + PDF)
and report.md into out/. Options (key=value):

  results=        files or folders, comma separated (required)
  out=            output folder (default: out); must be a directory or creatable, checked
                  before anything is loaded
  frames=         frame budget to score at (default 1000000; 1M, 500k, 1e6 accepted)
  frames_tol=     accept the last evaluation this many frames before `frames` when the
                  evaluation grid skips it (default 0.5% of frames; 0 = exact only)
  label=          rename methods: `<path or exp_name>:<name>,...`, or one name per results=
                  entry in order (`label=A,B`)
  methods=        comma list: only these methods (after label=), in this order
  reference=      method compared against every other in the probability-of-improvement
                  figure (default: the first method)
  seed=           bootstrap seed (default 0)
  reps=           bootstrap repetitions (default 2000)
  include_unknown=  true: add tasks outside the 57 as group `other` (raw scores); default false
  all_truncate=   domain (default, the paper's Table 1) | global: seed truncation for `all`
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.cli import UsageError, check_choice, check_keys, check_output_dir, split_kv
from harness.config import parse_int

KEYS = ("results", "out", "frames", "frames_tol", "label", "methods", "reference", "seed",
        "reps", "include_unknown", "all_truncate")
BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass
class Options:
    results: list[str]
    out: Path
    frames: int
    frames_tol: int | None
    label: str
    methods: list[str] | None
    reference: str | None
    seed: int
    reps: int
    include_unknown: bool
    all_truncate: str


def _frames(key: str, value: str) -> int:
    """A frame count in the forms run and launch accept (harness.config.parse_int)."""
    try:
        n = parse_int(value)
    except ValueError:
        raise UsageError(f"bad value {value!r} for {key}: expected a whole number of frames "
                         f"(e.g. 1000000, 1M, 500k)") from None
    if n < 0:
        raise UsageError(f"bad value {value!r} for {key}: expected a whole number >= 0")
    return n


def _int(key: str, value: str, low: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"bad value {value!r} for {key}: expected an integer >= {low}") from None
    if n < low:
        raise UsageError(f"bad value {value!r} for {key}: expected an integer >= {low}")
    return n


def parse_args(argv: list[str]) -> Options:
    kv = split_kv(argv)
    check_keys(kv, KEYS)
    if not kv.get("results"):
        raise UsageError(f"results= is required (files or folders, comma separated); "
                         f"valid keys: {', '.join(KEYS)}")
    check_output_dir("out", kv.get("out", "out"))  # before any loading
    frames = _frames("frames", kv.get("frames", "1000000"))
    if frames == 0:
        raise UsageError("bad value '0' for frames: expected a frame budget > 0")
    inc = check_choice("include_unknown", kv.get("include_unknown", "false").lower(),
                       list(BOOL))
    return Options(
        results=[p for p in kv["results"].split(",") if p.strip()],
        out=Path(kv.get("out", "out")),
        frames=frames,
        frames_tol=_frames("frames_tol", kv["frames_tol"]) if "frames_tol" in kv else None,
        label=kv.get("label", ""),
        methods=[m for m in kv["methods"].split(",") if m] if kv.get("methods") else None,
        reference=kv.get("reference") or None,
        seed=_int("seed", kv.get("seed", "0"), 0),
        reps=_int("reps", kv.get("reps", "2000"), 1),
        include_unknown=BOOL[inc],
        all_truncate=check_choice("all_truncate", kv.get("all_truncate", "domain"),
                                  ["domain", "global"]),
    )


def parse_labels(spec: str, paths: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """label= -> ({results= entry: name}, {exp_name: name})."""
    items = [i.strip() for i in spec.split(",") if i.strip()]
    if not items:
        return {}, {}
    if all(":" not in i for i in items):
        if len(items) != len(paths):
            raise UsageError(f"label= lists {len(items)} name(s) for {len(paths)} results= "
                             f"entries; give one per entry, or <path or exp_name>:<name>")
        return dict(zip(paths, items)), {}
    by_path, by_exp = {}, {}
    resolved = {str(Path(p).resolve()): p for p in paths}
    for i in items:
        key, sep, name = i.rpartition(":")
        if not sep or not key or not name:
            raise UsageError(f"bad label= entry {i!r}: expected <path or exp_name>:<name>")
        if key in paths:
            by_path[key] = name
        elif str(Path(key).resolve()) in resolved:
            by_path[resolved[str(Path(key).resolve())]] = name
        else:
            by_exp[key] = name
    return by_path, by_exp


def _progress(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:5.1f}s] {msg}", file=sys.stderr)


def run(opts: Options, command: str = "") -> dict:
    """The whole pipeline; returns {'report': path, 'summary': DataFrame, ...}."""
    from analysis import bootstrap, figures, report, scaling, scores
    from analysis.load import OTHER, load_results
    from analysis.matrix import RunScores

    t0 = time.perf_counter()
    by_path, by_exp = parse_labels(opts.label, opts.results)
    res = load_results(opts.results, by_path, by_exp)
    stray = [k for k in by_exp if k not in res.exp_names]
    if stray:
        raise UsageError(f"label= names {', '.join(map(repr, stray))}, which is neither a "
                         f"results= entry nor an exp_name; exp_names: {', '.join(res.exp_names)}")
    methods = res.methods
    if opts.methods:
        for m in opts.methods:
            check_choice("methods", m, methods)
        methods = list(dict.fromkeys(opts.methods))
        res.evals = res.evals.loc[res.evals["method"].isin(methods)]
        res.runs = res.runs.loc[res.runs["method"].isin(methods)].reset_index(drop=True)
    if not methods:
        raise UsageError("no methods found in results=")
    reference = methods[0] if opts.reference is None else check_choice(
        "reference", opts.reference, methods)
    _progress(f"loaded {len(res.evals):,} evaluations of {len(methods)} method(s)", t0)

    sc = scores.score_at(res, opts.frames, opts.frames_tol)
    if not opts.include_unknown:
        sc.scores = sc.scores.loc[sc.scores["domain"] != OTHER].reset_index(drop=True)
        sc.incomplete = sc.incomplete.loc[sc.incomplete["domain"] != OTHER].reset_index(
            drop=True)
    grid = scores.curve_grid(opts.frames)
    raw_curves = scores.run_curves(res, sc, grid)
    norm_curves = scores.normalise(sc.scores["task"], raw_curves)
    se_curves = norm_curves                     # sample efficiency from frame 0 on
    _progress(f"scored {len(sc.scores):,} runs; {len(sc.incomplete):,} incomplete", t0)

    groups = list(scores.GROUPS) + ([OTHER] if opts.include_unknown else [])
    built = {(m, g): scores.group_scores(sc, m, g, se_curves, opts.all_truncate)
             for m in methods for g in groups}
    taus = {}
    for g in groups:
        vals = [b.final.scores for (m, gg), b in built.items() if gg == g and b.final]
        if vals:
            top = max(float(np.nanmax(v)) for v in vals)
            taus[g] = np.linspace(0.0, max(1.0, top) * 1.02, 101)

    rows, prof, curves = [], {g: {} for g in groups}, {g: {} for g in groups}
    for (m, g), b in built.items():
        row = {"method": m, "group": g, "n_tasks": 0, "n_tasks_expected": b.n_expected,
               "n_seeds": 0, "n_seeds_max": 0, "n_runs": 0}
        if b.final is not None:
            with _quiet():   # a curve point no run has (frame 0 unevaluated) is NaN
                iv = bootstrap.interval_estimates(b.final, opts.reps,
                                                  bootstrap.rng_for(opts.seed, m, g),
                                                  curves=b.curves, taus=taus[g])
            row.update(n_tasks=b.final.n_tasks, n_seeds=int(b.final.n_per_task.min()),
                       n_seeds_max=int(b.final.n_per_task.max()),
                       n_runs=int(b.final.n_per_task.sum()))
            for s in ("mean", "iqm", "median", "optimality_gap"):
                row[s] = float(iv[s].point)
                row[f"{s}_ci_low"] = float(iv[s].low)
                row[f"{s}_ci_high"] = float(iv[s].high)
            prof[g][m] = (taus[g], iv["profile"])
            curves[g][m] = iv["curve"]
        row["frames"] = opts.frames
        row["note"] = b.note
        rows.append(row)
    cols = ["method", "group", "n_tasks", "n_tasks_expected", "n_seeds", "n_seeds_max",
            "n_runs"] + [f"{s}{x}" for s in ("mean", "iqm", "median", "optimality_gap")
                         for x in ("", "_ci_low", "_ci_high")] + ["frames", "note"]
    summary = pd.DataFrame(rows).reindex(columns=cols)
    _progress("bootstrap intervals done", t0)

    # Probability of improvement of the reference over every other method (shared tasks).
    poi = []
    pool = sc.scores if opts.include_unknown else sc.scores.loc[sc.scores["domain"] != OTHER]
    per_method = {m: RunScores.from_long(pool.loc[pool["method"] == m])
                  for m in methods if (pool["method"] == m).any()}
    if reference in per_method:
        for m in methods:
            if m == reference or m not in per_method:
                continue
            shared = [t for t in per_method[reference].tasks if t in per_method[m].tasks]
            if not shared:
                continue
            iv = bootstrap.probability_of_improvement(
                per_method[reference], per_method[m], opts.reps,
                bootstrap.rng_for(opts.seed, "poi", reference, m))
            poi.append((m, iv, len(shared)))

    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    per_task = scores.per_task_table(sc)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.8g")
    per_task.to_csv(out / "per_task.csv", index=False, float_format="%.6g")
    sc.scores.drop(columns=[c for c in ("run_dir",) if c in sc.scores]).to_csv(
        out / "scores.csv", index=False, float_format="%.8g")
    sc.incomplete.to_csv(out / "incomplete.csv", index=False)

    # Figures: collect the jobs, then draw them (two processes when there are two cores).
    fig_dir = out / "figures"
    colors = figures.method_colors(methods)
    F = opts.frames
    jobs: list[tuple[str, object, tuple, dict]] = []   # (report section, function, args, kw)
    # Per-task curves at the real evaluation steps (scores.task_curves), not on the grid.
    by_task = scores.task_curves(res, sc)
    for d in [*scores.DOMAINS] + ([OTHER] if opts.include_unknown else []):
        part = sc.scores.loc[sc.scores["domain"] == d]
        if not len(part):
            continue
        data: dict = {}
        for m, t in part[["method", "task"]].drop_duplicates().itertuples(index=False):
            if (m, t) in by_task:
                data.setdefault(t, {})[m] = by_task[(m, t)]
        tasks = scores.GROUP_TASKS[d] if d != OTHER else sorted(data)
        ylabel = "success rate" if d == "myosuite" else ("score" if d == OTHER else "return")
        jobs.append(("Per-task learning curves", figures.learning_curves,
                     (d, tasks, data, methods, colors, ylabel, fig_dir, F), {}))
    single = figures.single_seed_groups(summary)
    seeds_max = sc.scores.groupby(["method", "task"]).size().groupby(level=0).max()
    single_poi = {m for m, n in seeds_max.items() if n == 1}
    jobs += [("Aggregate scores", figures.aggregates,
              (summary, methods, groups, colors, fig_dir, F), {}),
             ("Performance profiles", figures.profiles, (prof, methods, colors, fig_dir, F),
              {"single": single}),
             ("Probability of improvement", figures.improvement,
              (poi, reference, colors, fig_dir, F), {"single": single_poi}),
             ("Sample efficiency", figures.sample_efficiency,
              (curves, grid, methods, colors, fig_dir, F), {"single": single, "tol": sc.tol})]
    section_notes: dict[str, list[str]] = {
        "Per-task learning curves": [
            f"Drawn at the real evaluation steps in [0, {F:,}] (no grid): mean ± std over "
            f"seeds at each step, dots on every evaluation when a curve has at most "
            f"{figures.MARKER_MAX}. Where a method's seeds evaluated at different steps "
            f"(dashed), each seed is linearly interpolated onto the union of their steps "
            f"within its own first..last evaluation, never extrapolated."],
        "Sample efficiency": [
            f"IQM on the grid 0, {F // scores.CURVE_POINTS:,}, ..., {F:,} frames: each run's "
            f"evaluations are linearly interpolated onto it; the value at 0 is an evaluation "
            f"in [0, {sc.tol:,}], the value at {F:,} the run's score."],
        "Scaling": [
            "A line joins only points computed on the same tasks (where a family's points "
            "differ, the task set most of them share is kept); each panel's title says how "
            "many tasks every point holds. Compute: each panel's x is the mean wall-clock "
            "time per completed run over that panel's tasks."],
    }
    notes_1 = report.single_seed_note(summary)
    if notes_1:
        section_notes["Aggregate scores"] = notes_1
    if "has_metrics" in sc.scores:
        dyn = sc.scores.loc[sc.scores["has_metrics"].eq(True)]
        silent = _methods_without_dynamics(dyn)
        if silent:
            section_notes["Norm and effective-LR dynamics"] = [
                f"No norm / effective-LR metrics (`critic/encoder/...`, agents/stability.py) "
                f"were logged by: {', '.join(silent)}; they are absent from these figures."]
        for d, part in dyn.groupby("domain", sort=False):
            quiet = [m for m in silent if (part["method"] == m).any()]
            part = part.loc[~part["method"].isin(silent)]
            if len(part):
                jobs.append(("Norm and effective-LR dynamics", _dynamics_figure,
                             (d, part[["method", "run_dir"]], methods, colors, fig_dir, F),
                             {"silent": quiet}))
    facts = scaling.method_facts(sc.scores, methods)
    sg = ("all", "dmc-hard", "hbench-hard", "mujoco", "dmc-em", "myosuite", "hbench")
    tasks_of = {k: frozenset(b.final.tasks) for k, b in built.items() if b.final is not None}
    at = f"at {figures._frames_str(F)} frames"
    jobs.append(("Scaling", figures.scaling,
                 (scaling.scaling_points(summary, facts, "width", sg, tasks_of), "critic width",
                  "scaling_width", True, fig_dir, f"Score vs critic width {at} (mean, 95% CI)"),
                 {}))
    jobs.append(("Scaling", figures.scaling,
                 (scaling.scaling_points(summary, facts, "utd", sg, tasks_of),
                  "updates per data (UTD)", "scaling_utd", True, fig_dir,
                  f"Score vs UTD {at} (mean, 95% CI)"), {}))
    timed = facts.loc[facts["hours"].notna()]
    if len(timed):
        devs = sorted({d for d in timed["device"] if d})
        unit = "CPU" if devs and all(d.lower() == "cpu" for d in devs) else "GPU"
        # Each panel's x: mean wall-clock time per completed run over that panel's tasks.
        hours = scaling.group_hours(sc.scores, tasks_of)
        top = max(hours.values(), default=1.0)
        scale, per = (1.0, "hours") if top >= 1 else ((60.0, "minutes") if top >= 1 / 60
                                                     else (3600.0, "seconds"))
        xl = (f"{unit}-{per} per run ({', '.join(devs) if devs else 'device not recorded'})")
        jobs.append(("Scaling", figures.scaling,
                     (scaling.scaling_points(summary, facts, "hours", sg, tasks_of, 1,
                                             x_of={k: v * scale for k, v in hours.items()}),
                      xl, "scaling_compute", False, fig_dir,
                      f"Score vs compute {at} (x: mean wall-clock {per} per completed run "
                      f"over each panel's tasks)"),
                     {"annotate": True}))
    # Report order; the jobs run the costly learning-curve grids first to balance the workers.
    figs: dict[str, list[str]] = {k: [] for k in (
        "Aggregate scores", "Performance profiles", "Probability of improvement",
        "Sample efficiency", "Per-task learning curves", "Norm and effective-LR dynamics",
        "Scaling")}
    for section, files in _render(jobs):
        figs.setdefault(section, []).extend(f[: -len(".png")] for f in files
                                            if f.endswith(".png"))
    _progress(f"{sum(map(len, figs.values()))} figures drawn", t0)

    rep = report.write(out, command=command, options=vars(opts), results=res, scored=sc,
                       summary=summary, per_task=per_task, poi=poi, reference=reference,
                       figures=figs, methods=methods, section_notes=section_notes)
    return {"report": rep, "summary": summary, "per_task": per_task, "scored": sc,
            "poi": poi, "figures": figs, "notes": res.notes, "seconds": time.perf_counter() - t0}


class _quiet:
    """Silence NumPy's 'mean of empty slice' warnings (NaN is the intended answer)."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        return self._w.__exit__(*a)


def _render(jobs):
    """Run figure jobs; in two processes when the machine has two cores or more. Each job
    returns the file names it wrote. Order of the result follows `jobs`."""
    import os
    import threading

    workers = min(2, os.cpu_count() or 1)
    # Forking a process that runs other threads (JAX's runtime, a caller's thread pool) can
    # deadlock the child; draw serially then.
    threaded = threading.active_count() > 1 or "jax" in sys.modules
    if workers < 2 or len(jobs) < 2 or threaded:
        return [(sec, fn(*a, **kw)) for sec, fn, a, kw in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the children inherit the imported modules and data (no re-import, no pickling of
    # the module state); matplotlib is on the Agg backend, so no GUI state is shared.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
        futures = [(sec, ex.submit(fn, *a, **kw)) for sec, fn, a, kw in jobs]
        return [(sec, f.result()) for sec, f in futures]


def _methods_without_dynamics(runs: pd.DataFrame) -> list[str]:
    """Methods none of whose runs (rows with method, run_dir) logged a dynamics column."""
    from analysis import store

    logged = {m for m, run_dir in zip(runs["method"], runs["run_dir"])
              if store.read_dynamics(run_dir) is not None}
    return [m for m in dict.fromkeys(runs["method"]) if m not in logged]


def _dynamics_figure(domain, runs, methods, colors, fig_dir, frames,
                     silent: list[str] = ()) -> list[str]:
    """Norm / effective-LR dynamics of one domain's complete store runs that logged them: per
    method the mean and min..max over runs at the frames where they logged (no grid; runs
    logged at different frames: scores.combine_runs)."""
    from analysis import figures, scores, store

    per: dict = {}
    for m, mp in runs.groupby("method", sort=False):
        stacks: dict = {}
        for run_dir in mp["run_dir"]:
            df = store.read_dynamics(run_dir)
            if df is None:
                continue
            for key, col in store.DYNAMICS_COLUMNS.items():
                if col not in df:
                    continue
                s = df[[store.FRAMES_COLUMN, col]].dropna()
                if not len(s):
                    continue
                s = s.loc[s[store.FRAMES_COLUMN] <= frames]
                stacks.setdefault(key, []).append(
                    (s[store.FRAMES_COLUMN].to_numpy(float), s[col].to_numpy(float)))
        for key, runs_ in stacks.items():
            c = scores.combine_runs(runs_)
            if c is not None:
                per.setdefault(m, {})[key] = c
    return figures.dynamics(domain, per, store.DYNAMICS_MODULES, store.DYNAMICS_QUANTITIES,
                            methods, colors, fig_dir, frames, silent=silent)


def main(argv: list[str] | None = None) -> int:
    from analysis.load import run_command

    done = run_command("analysis.make_figures", __doc__, sys.argv[1:] if argv is None else argv,
                       parse_args, run)
    if done is None:
        return 0
    opts, result = done
    sc = result["scored"]
    if len(sc.incomplete):
        per = sc.incomplete.groupby("method", sort=False).size()
        print(f"warning: {len(sc.incomplete)} run(s) have no score at {opts.frames:,} frames "
              f"and are left out ({', '.join(f'{m}: {n}' for m, n in per.items())}); "
              f"see {opts.out / 'incomplete.csv'}", file=sys.stderr)
    for n in result["notes"]:
        print(f"note: {n}", file=sys.stderr)
    print(f"report: {result['report']}  ({result['seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
