"""Per-method scaling facts: critic width, UTD, compute, and the family a method belongs to.

Store runs record them (config.json: `scale.width`, `scale.updates_per_frame` -> paper
UTD = 2 x updates_per_frame, written by the runner for every agent from the agent contract;
status.json: wall_time_s, device). Published files carry no
metadata, so they are parsed from the method name, as the published `scaling/` folder names
its runs: `simbaV2_cwidth256` -> width 256, `simba_utd4_reset` -> UTD 4.

A line in a scaling plot joins methods of one family that differ only in the plotted axis:
the family is the method name with its width/UTD tokens removed (`simbaV2`, `simba_reset`)
when it has such tokens, else the agent name from config.json, else the method name; in the
width plot it is further split by UTD, in the UTD plot by width, where those are known.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

WIDTH_RE = re.compile(r"(?:^|[_\-])c?width[_\-]?(\d+)(?=$|[_\-])", re.IGNORECASE)
UTD_RE = re.compile(r"(?:^|[_\-])utd[_\-]?(\d+(?:\.\d+)?)(?=$|[_\-])", re.IGNORECASE)


def parse_name(method: str) -> dict:
    """{'width', 'utd', 'family'} from a method name (NaN where absent)."""
    w = WIDTH_RE.search(method)
    u = UTD_RE.search(method)
    family = UTD_RE.sub("", WIDTH_RE.sub("", method)).strip("_-") or method
    return {"width": float(w.group(1)) if w else np.nan,
            "utd": float(u.group(1)) if u else np.nan, "family": family}


def _unique(values: pd.Series):
    v = values.dropna().unique()
    return v[0] if len(v) == 1 else (np.nan if len(v) == 0 else "mixed")


def method_facts(scores: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """One row per method: family, width, utd, hours (mean wall-clock hours per completed run,
    i.e. averaged over tasks and seeds) and device, from store runs when they recorded them,
    else from the name. `scores` is Scored.scores (complete runs only)."""
    rows = []
    for m in methods:
        sub = scores.loc[scores["method"] == m]
        named = parse_name(m)
        if named["family"] == m and "agent" in sub and sub["agent"].notna().any():
            agent = _unique(sub["agent"])
            named["family"] = agent if isinstance(agent, str) and agent != "mixed" else m
        facts = {"method": m, **named, "hours": np.nan, "device": None, "n_timed": 0}
        for k in ("width", "utd"):
            if k in sub and sub[k].notna().any():
                v = _unique(sub[k])
                facts[k] = float(v) if v != "mixed" else np.nan
        if "wall_time_s" in sub and "state" in sub:
            done = sub.loc[(sub["state"] == "completed") & sub["wall_time_s"].notna()]
            if len(done):
                facts["hours"] = float(done["wall_time_s"].mean() / 3600)
                facts["n_timed"] = int(len(done))
                dev = _unique(done["device"]) if "device" in done else np.nan
                facts["device"] = dev if isinstance(dev, str) else None
        rows.append(facts)
    return pd.DataFrame(rows)


def group_hours(scores: pd.DataFrame, tasks_of: dict) -> dict:
    """{(method, group): mean wall-clock hours per completed run over the group's tasks}
    (`tasks_of[(method, group)]`, the tasks in that group's score matrix), where timed."""
    if "wall_time_s" not in scores or "state" not in scores:
        return {}
    done = scores.loc[(scores["state"] == "completed") & scores["wall_time_s"].notna()]
    out = {}
    for (m, g), tasks in tasks_of.items():
        part = done.loc[(done["method"] == m) & done["task"].isin(tasks)]
        if len(part):
            out[(m, g)] = float(part["wall_time_s"].mean() / 3600)
    return out


def scaling_points(summary: pd.DataFrame, facts: pd.DataFrame, axis: str,
                   groups: tuple[str, ...], tasks_of: dict, min_points: int = 2,
                   x_of: dict | None = None) -> pd.DataFrame:
    """Summary rows joined with facts[axis] as `x`, one line per family and group.

    `x_of[(method, group)]`, when given, is the x of that point instead of facts[axis] (e.g.
    per-group compute: `group_hours`); a point without one is dropped.

    A line only joins points computed on the same tasks (`tasks_of[(method, group)]`, a
    frozenset): a mean over 5 of 14 tasks is not comparable with one over all 14. Where a
    family's points differ, the task set most of them share is kept (ties: the larger one).
    Lines with fewer than `min_points` distinct x values are dropped (one point is not a
    scaling curve). Columns `task_set` (frozenset) and `n_tasks` / `n_tasks_expected` say
    which tasks every point holds, so a figure can state it."""
    if x_of is None and facts[axis].isna().all():
        return pd.DataFrame()
    facts = facts.copy()
    other = {"width": ("utd", "UTD"), "utd": ("width", "width")}.get(axis)
    if other is not None:
        col, name = other
        facts["family"] = [f if np.isnan(v) else f"{f}, {name} {v:g}"
                           for f, v in zip(facts["family"], facts[col])]
    pts = summary.merge(facts[["method", "family", axis]], on="method")
    if x_of is not None:
        pts[axis] = [x_of.get((m, g), np.nan) for m, g in zip(pts["method"], pts["group"])]
    pts = pts.loc[pts[axis].notna() & pts["mean"].notna() & pts["group"].isin(groups)]
    pts = pts.rename(columns={axis: "x"}).copy()
    pts["task_set"] = [tasks_of.get((m, g)) for m, g in zip(pts["method"], pts["group"])]
    pts = pts.loc[pts["task_set"].notna()]
    keep = []
    for _, line in pts.groupby(["group", "family"], sort=False):
        counts = line["task_set"].value_counts()
        best = max(counts.index, key=lambda ts: (counts[ts], len(ts), sorted(ts)))
        line = line.loc[[ts == best for ts in line["task_set"]]]
        if line["x"].nunique() >= min_points:
            keep.append(line)
    if not keep:
        return pd.DataFrame()
    pts = pd.concat(keep)
    pts["n_tasks"] = [len(ts) for ts in pts["task_set"]]
    order = {g: i for i, g in enumerate(groups)}
    return pts.sort_values(["group", "family", "x"], key=lambda s: s.map(order)
                           if s.name == "group" else s).reset_index(drop=True)
