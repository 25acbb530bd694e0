"""`report.md`: the tables and every figure, with the rules that produced them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figures import GROUP_TITLES
from analysis.scores import DOMAINS

TABLE1_GROUPS = (*DOMAINS, "all")


def md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.3f}"
    return str(v).replace("|", "\\|")


def _with_ci(row, stat: str) -> str:
    if np.isnan(row[stat]):
        return "–"
    if row.get("n_seeds_max") == 1:
        # One seed per task: the bootstrap has nothing to resample; a [x, x] "interval"
        # would read as certainty.
        return f"{row[stat]:.3f} (1 seed: no interval)"
    return f"{row[stat]:.3f} [{row[f'{stat}_ci_low']:.3f}, {row[f'{stat}_ci_high']:.3f}]"


def single_seed_note(summary: pd.DataFrame) -> list[str]:
    """Report lines naming every (method, group) whose tasks all have one seed (zero-width
    intervals everywhere: tables, figures), and those where only some tasks do."""
    if "n_seeds_max" not in summary:
        return []
    ok = summary["mean"].notna()
    one = summary.loc[ok & summary["n_seeds_max"].eq(1)]
    some = summary.loc[ok & summary["n_seeds"].eq(1) & summary["n_seeds_max"].gt(1)]
    out = []
    if len(one):
        per = one.groupby("method", sort=False)["group"].apply(
            lambda g: ", ".join(GROUP_TITLES.get(x, x) for x in g))
        out.append("**1 seed: no interval.** With one seed per task the bootstrap has nothing "
                   "to resample, so its 95% CI has zero width; it is shown as `1 seed: no "
                   "interval` in the tables and figures, not as a certain value: "
                   + "; ".join(f"{m} ({g})" for m, g in per.items()) + ".")
    if len(some):
        out.append("Some tasks have a single seed (they add no spread to the intervals, which "
                   "are then too narrow): "
                   + "; ".join(f"{r.method} / {GROUP_TITLES.get(r.group, r.group)}"
                               for r in some.itertuples()) + ".")
    return out


def write(out: Path, *, command: str, options: dict, results, scored, summary: pd.DataFrame,
          per_task: pd.DataFrame, poi: list, reference: str | None, figures: dict[str, list],
          methods: list[str], section_notes: dict[str, list[str]] | None = None) -> Path:
    """Write out/report.md. `figures`: section title -> list of figure base names."""
    F = scored.frames
    L = [f"# Results at {F:,} frames", "",
         f"Command: `{command}`", "",
         f"- Score of a run: its evaluation at {F:,} frames (the last evaluation in "
         f"[{F - scored.tol:,}, {F:,}] when its evaluation grid skips {F:,}); runs that did not "
         f"get there are listed as incomplete and left out of everything below.",
         f"- Intervals: 95% percentile CIs from a stratified bootstrap (seeds resampled within "
         f"each task), {options['reps']} repetitions, seed={options['seed']}; identical "
         f"inputs and seed give identical numbers.",
         f"- `mean` is the paper's Table 1 rule: the mean of normalised scores over all "
         f"(task, seed) entries. `all` needs all 57 tasks; "
         + ("each domain is first truncated to its smallest seed count."
            if options["all_truncate"] == "domain"
            else "every task is first truncated to the smallest seed count over the 57."),
         "- Files: `summary.csv`, `per_task.csv`, `scores.csv` (every scored run), "
         "`incomplete.csv`, figures in `figures/` (PNG and PDF).", ""]

    # Inputs
    runs = results.runs
    inc = scored.incomplete
    rows = []
    for m in methods:
        sc = scored.scores.loc[scored.scores["method"] == m]
        rows.append({"method": m,
                     "sources": ", ".join(sorted({Path(s).name for s in
                                                  runs.loc[runs["method"] == m, "source"]})),
                     "tasks (57)": int(sc.loc[sc["domain"] != "other", "task"].nunique()),
                     "complete runs": len(sc),
                     "incomplete runs": int((inc["method"] == m).sum()),
                     "tasks outside the 57": len(results.unknown_tasks.get(m, []))})
    L += ["## Inputs", "", md_table(pd.DataFrame(rows)), ""]
    if results.notes:
        L += ["Loading notes:", ""] + [f"- {n}" for n in results.notes] + [""]
    unknown = {m: ts for m, ts in results.unknown_tasks.items() if m in methods}
    if unknown and not options["include_unknown"]:
        L += [f"- Tasks outside the 57 are not in any aggregate (`include_unknown=true` adds "
              f"them as group `other`, raw scores): "
              + "; ".join(f"{m}: {len(ts)}" for m, ts in unknown.items()), ""]

    if len(inc):
        L += ["## Incomplete runs", "",
              f"{len(inc)} run(s) have no score at {F:,} frames and are left out (each one is "
              f"listed in `incomplete.csv`):", ""]
        grp = inc.groupby(["method", "reason"], sort=False)
        show = grp.agg(runs=("seed", "size"), tasks=("task", "nunique"),
                       examples=("task", lambda t: ", ".join(list(dict.fromkeys(t))[:3])
                                 + (", ..." if t.nunique() > 3 else ""))).reset_index()
        L += [md_table(show[["method", "runs", "tasks", "reason", "examples"]]), ""]

    # Table 1
    t1 = []
    for m in methods:
        r = {"method": m}
        for g in TABLE1_GROUPS:
            row = summary.loc[(summary["method"] == m) & (summary["group"] == g)]
            r[GROUP_TITLES[g]] = _with_ci(row.iloc[0], "mean") if len(row) else "–"
        t1.append(r)
    L += ["## Mean normalised score (Table 1 layout)", "",
          "mean [95% CI]; – = no complete runs (domains) or not all 57 tasks (`all`).", ""]
    L += [x for n in single_seed_note(summary) for x in (f"- {n}", "")]
    L += [md_table(pd.DataFrame(t1)), ""]

    # Per-group statistics
    L += ["## Aggregates per group", ""]
    for g in summary["group"].unique():
        sub = summary.loc[(summary["group"] == g) & summary["mean"].notna()]
        if not len(sub):
            continue
        tab = pd.DataFrame({
            "method": sub["method"], "tasks": sub["n_tasks"].astype(int).astype(str)
            + "/" + sub["n_tasks_expected"].astype(int).astype(str),
            "seeds": [f"{a}" if a == b else f"{a}-{b}" for a, b in
                      zip(sub["n_seeds"].astype(int), sub["n_seeds_max"].astype(int))],
            "mean": [_with_ci(r, "mean") for _, r in sub.iterrows()],
            "IQM": [_with_ci(r, "iqm") for _, r in sub.iterrows()],
            "median": [_with_ci(r, "median") for _, r in sub.iterrows()],
            "optimality gap": [_with_ci(r, "optimality_gap") for _, r in sub.iterrows()],
            "note": sub["note"].fillna("")})
        L += [f"### {GROUP_TITLES.get(g, g)}", "", md_table(tab), ""]
    skipped = summary.loc[summary["mean"].isna() & (summary["note"] != "")]
    if len(skipped):
        L += ["Not computed:", ""] + [f"- {r.method} / {r.group}: {r.note}"
                                      for r in skipped.itertuples()] + [""]

    if poi:
        L += ["## Probability of improvement", "",
              f"P({reference} > X): per task, the probability that a random run of "
              f"{reference} beats a random run of X (ties 1/2), averaged over the tasks both "
              "have; 95% CIs, runs of each method resampled within each task.", "",
              md_table(pd.DataFrame([{"X": m, "tasks": n, "P": iv.point.item(),
                                      "CI low": iv.low.item(), "CI high": iv.high.item()}
                                     for m, iv, n in poi])), ""]

    L += ["## Figures", ""]
    section_notes = section_notes or {}
    for title, names in figures.items():
        notes = section_notes.get(title, [])
        if not names and not notes:
            continue
        L += [f"### {title}", ""] + [f"- {n}" for n in notes] + ([""] if notes else [])
        for name in names:
            L += [f"![{name}](figures/{name}.png)", "",
                  f"[{name}.pdf](figures/{name}.pdf)", ""]

    # Per-task normalised means
    pt = per_task.loc[per_task["n_seeds"] > 0]
    if len(pt):
        piv = pt.pivot_table(index=["domain", "task"], columns="method", values="norm_mean",
                             sort=False)
        piv = piv[[m for m in methods if m in piv.columns]].reset_index()
        L += ["## Per-task normalised score (mean over seeds)", "",
              "Raw scores, spreads and seed lists are in `per_task.csv`.", "",
              md_table(piv), ""]
    path = out / "report.md"
    path.write_text("\n".join(L))
    return path
