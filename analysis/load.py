"""Reading results into one tidy table: published long-format CSVs and our run store.

`load_results(paths)` returns a `Results` with

* `evals`: one row per evaluation that the analysis uses, columns
  `method, task, domain, seed, metric, env_step, value, source`. `task` is the canonical id
  (registry) for the 57 tasks and the file's own spelling otherwise (`domain == "other"`);
  only the task's own metric is kept (`Task.metric`: avg_success for MyoSuite, avg_return
  elsewhere; for tasks outside the 57, avg_success when logged, else avg_return).
* `runs`: one row per (method, task, seed) with `domain, source, kind` (published | store),
  `last_frames` and, for store runs, the facts from config.json / status.json (state, reason,
  width, depth, utd, wall_time_s, device, run_dir, has_metrics). A store run that has not
  evaluated yet is still a row (last_frames 0), so it can be reported as incomplete.
* `methods`: method names in order of first appearance; `notes`: what was cleaned and why.

Rules applied while loading (each one leaves a note):
* A (method, task, seed, metric, env_step) key repeated inside one source keeps its first
  occurrence. The published files append re-runs under the same seed label; keeping the first
  reproduces the paper's Table 1 (e.g. Simba UTD 8 on HBench: 0.657).
* The same method name coming from two sources (files, or store roots): an identical copy (same
  tasks, steps and values, seed labels ignored: the published copies permute them) is dropped;
  disjoint (task, seed) sets are merged (seeds split across files or machines); anything else
  is kept apart as `<method>@<source folder>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import suites
from analysis import store

LONG_COLUMNS = ("exp_name", "env_name", "seed", "metric", "env_step", "value")
OTHER = "other"  # domain of tasks outside the 57
METRICS = ("avg_return", "avg_success")


class LoadError(ValueError):
    """Unreadable or malformed input; the message names the file and what is wrong."""


def run_command(module: str, doc: str, argv: list[str], parse_args, run):
    """The analysis commands' entry: `--help` prints `doc` and returns None; otherwise
    `run(parse_args(argv), command line)`, where bad input (UsageError, LoadError) is one
    `error:` line and exit status 2. Returns (options, result)."""
    import shlex

    from harness.cli import UsageError, fail

    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return None
    command = f"python -m {module} " + " ".join(shlex.quote(a) for a in argv)
    try:
        opts = parse_args(argv)
        return opts, run(opts, command)
    except (UsageError, LoadError) as e:
        fail(str(e))


@dataclass
class Results:
    evals: pd.DataFrame
    runs: pd.DataFrame
    methods: list[str]
    notes: list[str] = field(default_factory=list)
    unknown_tasks: dict[str, list[str]] = field(default_factory=dict)  # method -> raw names
    exp_names: list[str] = field(default_factory=list)  # as found in the files, before label=


def read_long_csv(path: str | Path) -> pd.DataFrame:
    """One long-format CSV (with or without the unnamed pandas index column), typed."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise LoadError(f"cannot read {path}: {e}") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(LONG_COLUMNS))
    df = df.loc[:, [c for c in df.columns if c and not str(c).startswith("Unnamed")]]
    missing = [c for c in LONG_COLUMNS if c not in df.columns]
    if missing:
        raise LoadError(f"{path} is not in the long format: missing column(s) "
                        f"{', '.join(missing)}; expected {', '.join(LONG_COLUMNS)} "
                        f"(got {', '.join(map(str, df.columns[:8]))})")
    df = df[list(LONG_COLUMNS)].copy()
    for c in ("seed", "env_step", "value"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    rows = len(df)
    df = df.dropna(subset=["seed", "env_step", "value"])
    if rows and df.empty:
        raise LoadError(f"{path}: no row has numeric seed, env_step and value (all {rows} "
                        "row(s) hold non-numeric or empty values)")
    df["seed"] = df["seed"].round().astype("int64")
    # Some files store steps as floats (1000000.0); frames are integers.
    df["env_step"] = df["env_step"].round().astype("int64")
    df["exp_name"] = df["exp_name"].astype(str)
    df["env_name"] = df["env_name"].astype(str)
    df["metric"] = df["metric"].astype(str)
    return df


@dataclass
class _Source:
    given: str       # the results= entry it came from
    path: Path       # the file (published) or the store root
    kind: str        # published | store
    frame: pd.DataFrame  # long format plus `method`
    meta: pd.DataFrame | None = None  # store runs: one row per run dir
    repeats: dict = field(default_factory=dict)  # method -> rows dropped as repeated keys

    @property
    def tag(self) -> str:
        return self.path.parent.name if self.kind == "published" else self.path.name


def _expand(given: str) -> tuple[list[Path], list[Path], Path]:
    """(published csv files, store run dirs, resolved path) under one results= entry."""
    p = Path(given).expanduser()
    if not p.exists():
        raise LoadError(f"results path {given!r} does not exist")
    if p.is_file():
        if p.name == store.EVAL_FILE:
            return [], [p.parent], p.parent
        if p.suffix != ".csv":
            raise LoadError(f"results path {given!r} is neither a .csv file nor a folder")
        return [p], [], p
    run_dirs = store.find_run_dirs(p)
    in_runs = set(run_dirs)
    # Any other CSV inside a run directory (checkpoints/, ...) belongs to that run, not to the
    # published results.
    csvs = sorted(f for f in p.rglob("*.csv")
                  if f.name != store.EVAL_FILE and not in_runs.intersection(f.parents))
    if not csvs and not run_dirs:
        raise LoadError(f"results folder {given!r} holds no .csv files and no runs")
    return csvs, run_dirs, p


def _read_sources(paths: list[str]) -> list[_Source]:
    out: list[_Source] = []
    for given in paths:
        csvs, run_dirs, root = _expand(given)
        for f in csvs:
            out.append(_Source(given, f, "published", read_long_csv(f)))
        if run_dirs:
            frames, metas = [], []
            for d in run_dirs:
                run = store.read_run(d, read_long_csv)
                meta = run.meta()
                ev = run.evals
                if len(ev):
                    # One run dir is one run: its rows carry the run's own seed and task label.
                    ev = ev.assign(seed=int(meta["seed"]) if meta["seed"] is not None
                                   else ev["seed"])
                frames.append(ev)
                metas.append(meta)
            frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            if not len(frame):
                frame = pd.DataFrame(columns=list(LONG_COLUMNS))
            out.append(_Source(given, root, "store", frame, pd.DataFrame(metas)))
    return out


def _exps(src: _Source) -> list[str]:
    return list(dict.fromkeys(src.frame["exp_name"].tolist() + (
        src.meta["exp_name"].tolist() if src.meta is not None else [])))


def _check_path_labels(sources: list[_Source], by_path: dict[str, str]) -> None:
    """A label for a results= entry must name one method: refuse a folder holding several."""
    for given in by_path:
        exps = list(dict.fromkeys(e for s in sources if s.given == given for e in _exps(s)))
        if len(exps) > 1:
            raise LoadError(f"label= names the results entry {given!r} but it holds several "
                            f"methods ({', '.join(exps)}); label them by exp_name instead "
                            f"(label=<exp_name>:<name>,...)")


def _apply_labels(src: _Source, by_path: dict[str, str], by_exp: dict[str, str]) -> None:
    exps = _exps(src)
    if src.given in by_path:
        mapping = {e: by_path[src.given] for e in exps}
    else:
        mapping = {e: by_exp.get(e, e) for e in exps}
    src.frame["method"] = src.frame["exp_name"].map(mapping)
    if src.meta is not None:
        src.meta["method"] = src.meta["exp_name"].map(mapping)


_CANON_CACHE: dict[str, str | None] = {}


def _canonical(name: str) -> str | None:
    if name not in _CANON_CACHE:
        _CANON_CACHE[name] = suites.try_canonical_name(name)
    return _CANON_CACHE[name]


def _canonicalise(df: pd.DataFrame, col: str = "env_name") -> pd.DataFrame:
    names = pd.unique(df[col])
    canon = {n: _canonical(n) for n in names}
    df["task"] = df[col].map(lambda n: canon[n] or n)
    df["known"] = df[col].map(lambda n: canon[n] is not None)
    df["domain"] = [suites.TASKS[t].domain if k else OTHER for t, k in zip(df["task"], df["known"])]
    return df


def _select_metric(df: pd.DataFrame, notes: list[str], src: _Source) -> pd.DataFrame:
    """Keep each task's own metric (see module docstring)."""
    want = {t: suites.TASKS[t].metric for t in pd.unique(df.loc[df["known"], "task"])}
    unknown = df.loc[~df["known"]]
    if len(unknown):
        have = unknown.groupby(["method", "task"])["metric"].agg(set)
        for (m, t), ms in have.items():
            want[t] = "avg_success" if "avg_success" in ms else (
                "avg_return" if "avg_return" in ms else sorted(ms)[0])
    keep = df["metric"].to_numpy() == df["task"].map(want).to_numpy()
    known = df.loc[df["known"]]
    lost = set(map(tuple, known[["method", "task"]].drop_duplicates().to_numpy())) - set(
        map(tuple, known.loc[keep[df["known"].to_numpy()], ["method", "task"]]
            .drop_duplicates().to_numpy()))
    for m, t in sorted(lost):
        notes.append(f"{m}: task {t} in {src.path} has no {want[t]} rows (ignored)")
    return df.loc[keep]


def _dedupe(df: pd.DataFrame, src: _Source) -> pd.DataFrame:
    key = ["method", "task", "seed", "metric", "env_step"]
    dup = df.duplicated(key, keep="first")
    src.repeats = df.loc[dup].groupby("method").size().to_dict() if dup.any() else {}
    return df.loc[~dup].copy()


def _fingerprint(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["task", "metric", "env_step", "value"])[
        ["task", "metric", "env_step", "value"]].reset_index(drop=True)


def _identical(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    fa, fb = _fingerprint(a), _fingerprint(b)
    for c in ("task", "metric", "env_step"):
        if not (fa[c].to_numpy() == fb[c].to_numpy()).all():
            return False
    return bool(np.allclose(fa["value"].to_numpy(), fb["value"].to_numpy(), rtol=1e-9, atol=1e-9))


def _resolve_method_clashes(sources: list[_Source], notes: list[str]) -> None:
    """Apply the duplicate / merge / rename rule for a method name found in several sources."""
    taken: dict[str, list[tuple[_Source, pd.DataFrame]]] = {}
    for src in sources:
        for m in list(pd.unique(src.frame["method"])):
            part = src.frame.loc[src.frame["method"] == m]
            if m not in taken:
                taken[m] = [(src, part)]
                continue
            if any(_identical(part, other) for _, other in taken[m]):
                notes.append(f"{m}: {src.path} is a copy of data already loaded (same values, "
                             f"seed labels aside); ignored")
                src.frame = src.frame.loc[src.frame["method"] != m]
                if src.meta is not None:
                    src.meta = src.meta.loc[src.meta["method"] != m]
                continue
            keys = set(map(tuple, part[["task", "seed"]].drop_duplicates().to_numpy()))
            seen = set()
            for _, other in taken[m]:
                seen |= set(map(tuple, other[["task", "seed"]].drop_duplicates().to_numpy()))
            if keys & seen:
                new = f"{m}@{src.tag}"
                i = 2
                while new in taken:
                    new, i = f"{m}@{src.tag}{i}", i + 1
                notes.append(f"{m}: {src.path} holds different runs under the same name and "
                             f"seeds; reported as {new!r} (use label= to name it)")
                src.frame.loc[src.frame["method"] == m, "method"] = new
                if src.meta is not None:
                    src.meta.loc[src.meta["method"] == m, "method"] = new
                taken[new] = [(src, src.frame.loc[src.frame["method"] == new])]
            else:
                taken[m].append((src, part))


def load_results(paths: list[str], by_path: dict[str, str] | None = None,
                 by_exp: dict[str, str] | None = None) -> Results:
    """Read every results= entry (files or folders; see the module docstring)."""
    by_path, by_exp = by_path or {}, by_exp or {}
    notes: list[str] = []
    sources = _read_sources(paths)
    exp_names = list(dict.fromkeys(
        [e for s in sources for e in pd.unique(s.frame["exp_name"])] +
        [e for s in sources if s.meta is not None and len(s.meta) for e in s.meta["exp_name"]]))
    _check_path_labels(sources, by_path)
    unknown: dict[str, set[str]] = {}
    for src in sources:
        _apply_labels(src, by_path, by_exp)
        f = _canonicalise(src.frame)
        for m, t in f.loc[~f["known"], ["method", "task"]].drop_duplicates().to_numpy():
            unknown.setdefault(m, set()).add(t)
        f = _select_metric(f, notes, src)
        src.frame = _dedupe(f, src)
        if src.meta is not None and len(src.meta):
            src.meta = _canonicalise(src.meta)
    _resolve_method_clashes(sources, notes)
    for src in sources:
        present = set(pd.unique(src.frame["method"]))
        for m, n in src.repeats.items():
            if m in present:
                notes.append(f"{m}: {n} evaluation rows in {src.path} repeat a (task, seed, "
                             f"step) seen earlier in that file (re-runs under the same seed "
                             f"label); kept the first occurrence")

    cols = ["method", "task", "domain", "seed", "metric", "env_step", "value"]
    evals = pd.concat([s.frame[cols].assign(source=str(s.path)) for s in sources],
                      ignore_index=True)
    methods = list(dict.fromkeys(
        [m for s in sources for m in pd.unique(s.frame["method"])] +
        [m for s in sources if s.meta is not None and len(s.meta)
         for m in pd.unique(s.meta["method"])]))

    # One row per run: what the evaluations say, joined with what the store recorded.
    key = ["method", "task", "seed"]
    runs = (evals.groupby(key, sort=False)
            .agg(domain=("domain", "first"), source=("source", "first"),
                 last_frames=("env_step", "max"))
            .reset_index())
    runs["kind"] = "published"
    store_src = [s for s in sources if s.kind == "store" and s.meta is not None and len(s.meta)]
    if store_src:
        meta = pd.concat([s.meta.assign(source=str(s.path)) for s in store_src],
                         ignore_index=True)
        meta = meta.dropna(subset=["seed"]).copy()
        meta["seed"] = meta["seed"].astype("int64")
        meta = meta.drop(columns=["exp_name", "env_name", "known"]).drop_duplicates(key)
        runs = runs.drop(columns=["kind"]).merge(
            meta.drop(columns=["source", "domain"]), on=key, how="outer", indicator=True)
        runs["kind"] = np.where(runs["_merge"] == "left_only", "published", "store")
        runs = runs.drop(columns=["_merge"])
        fill = meta.set_index(key)
        miss = runs["domain"].isna()
        if miss.any():
            idx = pd.MultiIndex.from_frame(runs.loc[miss, key])
            runs.loc[miss, "domain"] = fill.loc[idx, "domain"].to_numpy()
            runs.loc[miss, "source"] = fill.loc[idx, "source"].to_numpy()
        runs["last_frames"] = runs["last_frames"].fillna(0).astype("int64")
    order = {m: i for i, m in enumerate(methods)}
    runs = runs.sort_values(["method", "task", "seed"], key=lambda s: s.map(order)
                            if s.name == "method" else s).reset_index(drop=True)
    unknown_tasks = {m: sorted(ts) for m, ts in unknown.items() if ts}
    return Results(evals=evals, runs=runs, methods=methods, notes=notes,
                   unknown_tasks=unknown_tasks, exp_names=exp_names)
