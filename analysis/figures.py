"""Figures (PNG + PDF). Each function takes data already computed by the statistics modules
and only draws; colours are fixed per method across all figures (`method_colors`)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.lines  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

GROUP_TITLES = {"mujoco": "MuJoCo (5)", "dmc-em": "DMC easy/medium (21)",
                "dmc-hard": "DMC hard (7)", "myosuite": "MyoSuite (10)", "hbench": "HBench (14)",
                "all": "All (57)", "hbench-hard": "HBench-hard (5)", "other": "outside the 57"}
GROUP_NAMES = {"mujoco": "MuJoCo", "dmc-em": "DMC easy/medium", "dmc-hard": "DMC hard",
               "myosuite": "MyoSuite", "hbench": "HBench", "all": "All",
               "hbench-hard": "HBench-hard", "other": "outside the 57"}
GROUP_SIZES = {"mujoco": 5, "dmc-em": 21, "dmc-hard": 7, "myosuite": 10, "hbench": 14,
               "all": 57, "hbench-hard": 5}
MARKER_MAX = 25        # curves with at most this many points get a marker on every point
ONE_SEED = "1 seed: no interval"
STAT_TITLES = {"median": "Median", "iqm": "IQM", "mean": "Mean",
               "optimality_gap": "Optimality gap"}
DPI = 110

plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
                     "legend.fontsize": 8, "axes.spines.top": False,
                     "axes.spines.right": False})


def method_colors(methods: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _save(fig, out_dir: Path, name: str) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for ext in ("png", "pdf"):
        # Layout is fixed by tight_layout; bbox_inches="tight" would draw every figure twice.
        fig.savefig(out_dir / f"{name}.{ext}", dpi=DPI)
        files.append(f"{name}.{ext}")
    plt.close(fig)
    return files


def group_title(group: str, n_tasks=None) -> str:
    """`HBench (5 of 14 tasks)`: how many tasks the points of a panel hold, out of the
    group's; `n_tasks` may be a set of counts (lines over different task sets)."""
    name = GROUP_NAMES.get(group, group)
    if n_tasks is None:
        return GROUP_TITLES.get(group, group)
    counts = sorted({int(n) for n in np.atleast_1d(list(n_tasks) if isinstance(
        n_tasks, (set, frozenset, list, tuple)) else n_tasks)})
    total = GROUP_SIZES.get(group)
    c = " or ".join(map(str, counts))
    return f"{name} ({c} of {total} tasks)" if total else f"{name} ({c} tasks)"


def _wrap(text: str, width_in: float, fontsize: float = 12) -> str:
    """Wrap a title to the figure width (about 0.6 em per character) so it is never cut."""
    import textwrap

    chars = max(20, int(0.95 * width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def single_seed_groups(summary) -> dict[str, set]:
    """method -> groups where every task has one seed (the bootstrap interval has zero
    width: there is nothing to resample)."""
    out: dict[str, set] = {}
    if summary is None or "n_seeds_max" not in summary:
        return out
    ok = summary["mean"].notna() & summary["n_seeds_max"].eq(1)
    for m, g in zip(summary.loc[ok, "method"], summary.loc[ok, "group"]):
        out.setdefault(m, set()).add(g)
    return out


def _seed_label(m: str, groups, single: dict | None) -> str:
    """Legend label of a method: says `1 seed: no interval` where that holds."""
    one = [g for g in groups if g in (single or {}).get(m, ())]
    if not one:
        return m
    if len(one) == len(set(groups)):
        return f"{m} ({ONE_SEED})"
    return f"{m} (1 seed in {', '.join(GROUP_NAMES.get(g, g) for g in one)}: no interval)"


def _frames_str(x: float) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else (f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}")


def _readable(x: float) -> str:
    """A short tick label for any positive number: 0.0012, 0.25, 3.5, 120, 4,500."""
    if x == 0 or not np.isfinite(x):
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) < 1e-3:
        m, e = f"{x:.1e}".split("e")
        return f"{m.rstrip('0').rstrip('.')}e{int(e)}"
    return f"{x:.2g}" if abs(x) < 1 else f"{x:.3g}"


def _frames_axis(ax, frames_max: float) -> None:
    ax.set_xlim(0, frames_max)
    if frames_max >= 1e5:
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, _: f"{x / 1e6:g}M" if x else "0"))


def _tight(fig, bottom: float = 0.0, **kw) -> None:
    """tight_layout below the suptitle: the title's space is reserved in inches, so it never
    overlaps the top panels of a tall figure (tight_layout alone reserves a fraction)."""
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    inches = 0.2 * (title.count("\n") + 1) + 0.25 if title else 0.0
    if title:  # anchored 0.08 in below the top edge, whatever the figure's height
        fig._suptitle.set_y(1 - 0.08 / fig.get_figheight())
        fig._suptitle.set_verticalalignment("top")
    fig.tight_layout(rect=(0, bottom, 1, 1 - inches / fig.get_figheight()), **kw)


def _finish(fig, title: str, spare, handles, labels, ncol: int = 5) -> None:
    """Title, layout and one legend for the whole figure: inside the empty grid cells when
    there are any, else in a strip below the panels."""
    fig.suptitle(_wrap(title, fig.get_figwidth()))
    if not labels:
        _tight(fig)
        return
    col_pt = max(len(str(lab)) for lab in labels) * 4.9 + 40      # legend font 8 pt
    if spare:
        # The legend goes into the empty cells when it fits there, else below.
        bb = spare[0].get_position()
        cell_w = bb.width * fig.get_figwidth() * 72 * len(spare)
        cell_h = bb.height * fig.get_figheight() * 72
        cols = max(1, int(cell_w // col_pt))
        if math.ceil(len(labels) / cols) * 12 <= cell_h:
            _tight(fig)
            ax = spare[0]
            ax.set_visible(True)
            ax.axis("off")
            ax.legend(handles, labels, loc="upper left", frameon=False,
                      ncol=min(cols, max(1, math.ceil(len(labels) / 8))))
            return
        ncol = 8
    ncol = max(1, min(ncol, len(labels), int(fig.get_figwidth() * 72 // col_pt)))
    rows = math.ceil(len(labels) / ncol)
    extra = 0.17 * rows + 0.3
    fig.set_figheight(fig.get_figheight() + extra)
    frac = extra / fig.get_figheight()
    _tight(fig, frac)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), ncol),
               frameon=False, bbox_to_anchor=(0.5, 0.0))


def _method_handles(methods, colors, **kw):
    return [matplotlib.lines.Line2D([], [], color=colors[m], lw=2, **kw) for m in methods]


def aggregates(summary, methods, groups, colors, out_dir: Path, frames: int) -> list[str]:
    """Rows: groups; columns: median, IQM, mean, optimality gap; a 95% CI bar per method."""
    stats = list(STAT_TITLES)
    rows = [g for g in groups if summary.loc[summary["group"] == g, "mean"].notna().any()]
    if not rows:
        return []
    height = sum(0.3 * max(2, summary.loc[(summary["group"] == g)
                                          & summary["mean"].notna()].shape[0]) + 0.9
                 for g in rows)
    fig, axes = plt.subplots(len(rows), len(stats), figsize=(13, height + 0.9), squeeze=False,
                             gridspec_kw={"height_ratios": [
                                 max(2, summary.loc[(summary["group"] == g)
                                                    & summary["mean"].notna()].shape[0])
                                 for g in rows]})
    any_single = False
    for i, g in enumerate(rows):
        sub = summary.loc[(summary["group"] == g) & summary["mean"].notna()]
        sub = sub.set_index("method").reindex([m for m in methods if m in set(sub["method"])])
        y = np.arange(len(sub))[::-1]
        for j, s in enumerate(stats):
            ax = axes[i, j]
            lo, hi = sub[f"{s}_ci_low"].to_numpy(), sub[f"{s}_ci_high"].to_numpy()
            pt = sub[s].to_numpy()
            for k, m in enumerate(sub.index):
                ax.barh(y[k], hi[k] - lo[k], left=lo[k], height=0.6, color=colors[m],
                        alpha=0.75)
                ax.plot([pt[k], pt[k]], [y[k] - 0.3, y[k] + 0.3], color="k", lw=1.2)
                if hi[k] - lo[k] <= 0:           # no interval: show the point itself
                    ax.plot(pt[k], y[k], "D", color=colors[m], mec="k", ms=5)
            vals = np.concatenate([lo, hi, pt])
            vals = vals[np.isfinite(vals)]
            if len(vals):
                a, b = float(vals.min()), float(vals.max())
                pad = 0.08 * (b - a) if b > a else max(0.05, 0.1 * abs(a))
                ax.set_xlim(a - pad, b + pad)
            ax.set_yticks(y)
            # Partial coverage shows in the label: a mean over 5 of 14 tasks is another thing;
            # so does a zero-width interval from a single seed.
            names = []
            for m, n, e, ns in zip(sub.index, sub["n_tasks"], sub["n_tasks_expected"],
                                   sub["n_seeds_max"] if "n_seeds_max" in sub
                                   else [np.nan] * len(sub)):
                extra = [] if n == e or not e else [f"{n:.0f}/{e:.0f} tasks"]
                if ns == 1:
                    extra.append(ONE_SEED)
                    any_single = True
                names.append(f"{m} ({'; '.join(extra)})" if extra else m)
            ax.set_yticklabels(names if j == 0 else [])
            ax.set_ylim(-0.6, len(sub) - 0.4)
            ax.grid(axis="x", alpha=0.3)
            if i == 0:
                ax.set_title(STAT_TITLES[s])
            if j == 0:
                # The group name sits above the method labels (a y label beside them
                # collides with long method names).
                ax.annotate(GROUP_TITLES.get(g, g), (0, 1), xycoords="axes fraction",
                            xytext=(-6, 4), textcoords="offset points", ha="right",
                            va="bottom", fontweight="bold", fontsize=9,
                            annotation_clip=False)
            ax.set_xlabel("normalised score" if i == len(rows) - 1 else "")
    title = (f"Aggregate scores at {_frames_str(frames)} frames (95% stratified bootstrap CIs;"
             f" lower optimality gap is better)")
    if any_single:
        title += f"\n{ONE_SEED} (one seed per task: nothing to resample; diamond = point)"
    fig.suptitle(_wrap(title, fig.get_figwidth()))
    _tight(fig, h_pad=1.6)
    return _save(fig, out_dir, "aggregates")


def _grid(n: int, ncols: int, w: float, h: float, sharex: bool = False):
    """n panels in rows of `ncols`; returns (fig, used axes, spare hidden axes)."""
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows + 0.9),
                             squeeze=False, sharex=sharex)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    if sharex:
        # Tick labels only where no panel sits below (fewer labels also draw faster).
        for i, ax in enumerate(flat[:n]):
            ax.xaxis.set_tick_params(labelbottom=i + ncols >= n)
    return fig, flat[:n], list(flat[n:])


def profiles(data: dict, methods, colors, out_dir: Path, frames: int,
             single: dict | None = None) -> list[str]:
    """data: group -> {method: (taus, Interval over taus)}. One panel per group.
    `single`: method -> groups with one seed per task (see `single_seed_groups`)."""
    groups = [g for g in data if data[g]]
    if not groups:
        return []
    fig, axes, spare = _grid(len(groups), 3, 4.2, 3.2)
    shown = []
    for ax, g in zip(axes, groups):
        for m in methods:
            if m not in data[g]:
                continue
            taus, iv = data[g][m]
            ax.plot(taus, iv.point, color=colors[m], lw=1.5)
            ax.fill_between(taus, iv.low, iv.high, color=colors[m], alpha=0.2, lw=0)
            shown.append(m)
        ax.set_title(GROUP_TITLES.get(g, g))
        ax.set_xlabel(r"normalised score $\tau$")
        ax.set_ylabel(r"fraction of runs with score > $\tau$")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    shown = [m for m in methods if m in shown]
    labels = [_seed_label(m, [g for g in groups if m in data[g]], single) for m in shown]
    _finish(fig, f"Performance profiles at {_frames_str(frames)} frames (95% CIs)", spare,
            _method_handles(shown, colors), labels)
    return _save(fig, out_dir, "performance_profiles")


def improvement(rows, reference: str, colors, out_dir: Path, frames: int,
                single: set | None = None) -> list[str]:
    """rows: list of (other method, Interval, n shared tasks). `single`: methods with one
    seed on every task (with the reference also at one seed, the interval has zero width)."""
    if not rows:
        return []
    single = set(single or ())
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.9))
    y = np.arange(len(rows))[::-1]
    for k, (m, iv, n) in enumerate(rows):
        ax.barh(y[k], iv.high - iv.low, left=iv.low, height=0.6, color=colors[m], alpha=0.75)
        ax.plot([iv.point, iv.point], [y[k] - 0.3, y[k] + 0.3], color="k", lw=1.2)
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels([f"vs {m}  ({n} tasks"
                        + (f"; {ONE_SEED})" if reference in single and m in single else ")")
                        for m, _, n in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel(_wrap(f"P({reference} > other)", 3.0, 9))
    title = (f"Probability of improvement of {reference} at {_frames_str(frames)} frames "
             f"(95% CIs): per task, the probability that a run of {reference} scores higher "
             f"than a run of the other method, mean over shared tasks")
    if reference in single:
        title += (f"\n{reference} has 1 seed per task"
                  + ("; methods also at 1 seed get no interval" if single - {reference}
                     else ""))
    # On the figure, not the axes: long method labels push the axes (and its title) right.
    fig.suptitle(_wrap(title, fig.get_figwidth()), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    # room for the wrapped title on top of the panel's own height
    fig.set_figheight(fig.get_figheight() + 0.2 * fig._suptitle.get_text().count("\n"))
    _tight(fig)
    return _save(fig, out_dir, "probability_of_improvement")


def sample_efficiency(data: dict, grid, methods, colors, out_dir: Path,
                      frames: int, single: dict | None = None,
                      tol: int | None = None) -> list[str]:
    """data: group -> {method: Interval over grid}: IQM of normalised score vs frames. The
    grid (0, F/20, ..., F) holds each run's evaluations linearly interpolated (the title says
    so); a point where no run has a value (e.g. frame 0 when nobody evaluated there) is a
    gap."""
    groups = [g for g in data if data[g]]
    if not groups:
        return []
    fig, axes, spare = _grid(len(groups), 3, 4.2, 3.2, sharex=True)
    shown = []
    for ax, g in zip(axes, groups):
        for m in methods:
            if m not in data[g]:
                continue
            iv = data[g][m]
            ax.plot(grid, iv.point, color=colors[m], lw=1.5, marker="o", ms=2.5)
            ax.fill_between(grid, iv.low, iv.high, color=colors[m], alpha=0.2, lw=0)
            shown.append(m)
        ax.set_title(GROUP_TITLES.get(g, g))
        ax.set_xlabel("environment frames")
        ax.set_ylabel("IQM normalised score")
        _frames_axis(ax, frames)
        ax.grid(alpha=0.3)
    shown = [m for m in methods if m in shown]
    labels = [_seed_label(m, [g for g in groups if m in data[g]], single) for m in shown]
    step = grid[1] - grid[0] if len(grid) > 1 else frames
    _finish(fig, f"Sample efficiency: IQM of normalised score (95% stratified bootstrap CIs); "
            f"points every {_frames_str(step)} frames from 0, each run's evaluations linearly "
            f"interpolated onto them (frame 0: an evaluation in the first "
            f"{round(0.005 * frames) if tol is None else tol:,} frames)",
            spare, _method_handles(shown, colors), labels)
    return _save(fig, out_dir, "sample_efficiency")


def _clamp_unit(ax) -> None:
    """Success rates live in [0, 1]: a little margin, never below 0 or above 1."""
    ax.set_ylim(-0.04, 1.04)


def _curve(ax, c, color, band: str = "std", lw: float = 1.2, unit: bool = False) -> None:
    """One `scores.Curve`-like object (steps, mean, std / low, high, shared) at its real
    steps: markers when there are few points; dashed when the runs' steps differ (then
    the points are interpolated, see scores.combine_runs)."""
    x = np.asarray(c.steps, float)
    mk = dict(marker="o", ms=2.5) if len(x) <= MARKER_MAX and c.shared else {}
    if len(x) == 1:
        mk = dict(marker="o", ms=3.5)
    ax.plot(x, c.mean, color=color, lw=lw, ls="-" if c.shared else "--", **mk)
    lo, hi = (c.mean - c.std, c.mean + c.std) if band == "std" else (c.low, c.high)
    if unit:
        lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    if c.n_runs > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)


def learning_curves(domain: str, tasks, data: dict, methods, colors, ylabel: str,
                    out_dir: Path, frames: int) -> list[str]:
    """data: task -> {method: scores.Curve} at the evaluation steps (no grid); one panel per
    task: mean ± std over seeds. A success-rate axis is clamped to [0, 1]."""
    tasks = [t for t in tasks if data.get(t)]
    if not tasks:
        return []
    unit = ylabel == "success rate"
    ncols = 5 if len(tasks) > 8 else 4
    # At least ~7 inches wide, so the title and legend of a one-task figure fit.
    fig, axes, spare = _grid(len(tasks), ncols, max(3.0, 7.0 / min(ncols, len(tasks))), 2.3,
                             sharex=True)
    shown, n_one, n_tasks, unshared = [], {}, {}, set()
    for ax, t in zip(axes, tasks):
        for m in methods:
            c = data[t].get(m)
            if c is None:
                continue
            _curve(ax, c, colors[m], unit=unit)
            shown.append(m)
            n_tasks[m] = n_tasks.get(m, 0) + 1
            n_one[m] = n_one.get(m, 0) + (c.n_runs == 1)
            if not c.shared:
                unshared.add(m)
        ax.set_title(t, fontsize=9)
        _frames_axis(ax, frames)
        if unit:
            _clamp_unit(ax)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes):
        if i + ncols >= len(axes):
            ax.set_xlabel("frames", fontsize=8)
        if i % ncols == 0:           # per row (a figure-level label collides with ticks)
            ax.set_ylabel(ylabel, fontsize=8)
    shown = [m for m in methods if m in shown]
    labels = []
    for m in shown:
        notes = []
        if n_one[m] == n_tasks[m]:
            notes.append("1 seed: no band")
        elif n_one[m]:
            notes.append(f"1 seed on {n_one[m]}/{n_tasks[m]} tasks: no band there")
        if m in unshared:
            notes.append("dashed: seeds' steps differ, interpolated")
        labels.append(f"{m} ({'; '.join(notes)})" if notes else m)
    _finish(fig, f"{GROUP_TITLES.get(domain, domain)}: per-task learning curves "
            f"(mean ± std over seeds at the evaluation steps)", spare,
            _method_handles(shown, colors), labels)
    return _save(fig, out_dir, f"learning_curves_{domain}")


DYN_TITLES = {"featnorm": "feature norm", "effective_pnorm": "parameter norm",
              "effective_gnorm": "gradient norm", "effective_lr": "effective LR"}


def dynamics(domain: str, data: dict, modules, quantities, methods, colors, out_dir: Path,
             frames: int, silent=()) -> list[str]:
    """data: method -> {(module, quantity): scores.Curve} at the frames where the runs logged
    the metric (mean over runs, band min..max; rule in scores.combine_runs).
    Rows: encoder, predictor; columns: feature / parameter / gradient norm, effective LR.
    `silent`: methods with runs in this domain that logged none of these metrics (named in
    the title)."""
    if not data:
        return []
    fig, axes = plt.subplots(len(modules), len(quantities),
                             figsize=(3.3 * len(quantities), 2.6 * len(modules) + 0.8),
                             squeeze=False)
    shown, unshared = [], set()
    for i, mod in enumerate(modules):
        for j, q in enumerate(quantities):
            ax = axes[i, j]
            for m in methods:
                d = data.get(m, {}).get((mod, q))
                if d is None:
                    continue
                _curve(ax, d, colors[m], band="range", lw=1.4)
                if not d.shared:
                    unshared.add(m)
                shown.append(m)
            if q in ("effective_gnorm", "effective_lr"):
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
                    lambda y, _: _readable(y)))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            else:
                # Plain numbers, never an offset ("+3.6e1") or a x1e-5 factor.
                ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
                    lambda y, _: _readable(y)))
            ax.set_title(f"critic {mod}: {DYN_TITLES.get(q, q)}")
            _frames_axis(ax, frames)
            ax.grid(alpha=0.3)
            if i == len(modules) - 1:
                ax.set_xlabel("environment frames")
    shown = [m for m in methods if m in shown]
    title = (f"{GROUP_TITLES.get(domain, domain)}: norm and effective-LR dynamics "
             f"(mean over runs at the frames they logged, band = min..max)")
    if unshared:
        title += (f"\ndashed: runs logged at different frames, interpolated onto the union "
                  f"({', '.join(m for m in methods if m in unshared)})")
    if silent:
        title += f"\nno such metrics logged by: {', '.join(silent)}"
    _finish(fig, title, [], _method_handles(shown, colors), shown)
    return _save(fig, out_dir, f"dynamics_{domain}")


def scaling_panels(points) -> list[tuple[str, list[str]]]:
    """[(title, [groups drawn in it])]: one panel per group, its title saying how many tasks
    every point holds (`HBench (5 of 14 tasks)`); a group whose points are exactly another
    group's (same methods, same tasks, e.g. HBench restricted to the 5 HBench-hard tasks)
    shares that panel and its title says so."""
    panels: list[tuple[str, list[str]]] = []
    seen: dict = {}
    for g in dict.fromkeys(points["group"]):
        sub = points.loc[points["group"] == g]
        n = sorted({int(v) for v in sub["n_tasks"]})
        key = (frozenset(zip(sub["method"], sub["task_set"])) if "task_set" in sub else None)
        if key is not None and key in seen:
            i = seen[key]
            panels[i] = (panels[i][0] + f" = {group_title(g, n)}", panels[i][1] + [g])
            continue
        if key is not None:
            seen[key] = len(panels)
        panels.append((group_title(g, n), [g]))
    return panels


def scaling_labels(points) -> dict[str, str]:
    """Legend label of every family: the family name, plus its method name when the family
    is drawn from a single method that is named otherwise (so a point label never disagrees
    with the legend)."""
    out = {}
    for fam, part in points.groupby("family", sort=False):
        ms = list(dict.fromkeys(part["method"]))
        out[fam] = fam if len(ms) > 1 or ms == [fam] else f"{ms[0]} ({fam})"
    return out


def scaling(points, x_label: str, name: str, log2: bool, out_dir: Path, title: str,
            annotate: bool = False) -> list[str]:
    """points: DataFrame with family, method, group, x, mean, mean_ci_low, mean_ci_high,
    n_tasks[, task_set, n_seeds_max] (analysis.scaling.scaling_points). One panel per group,
    one line per family (sorted by x; its points all hold the same tasks, the panel title
    says how many). log2: a log2 axis ticked at the points' x (widths, UTDs); else a log10
    axis with short tick labels (compute). annotate: write each point's method name when a
    line holds several methods. Points from one seed per task (zero-width interval) are
    drawn hollow and named in the title."""
    if points is None or not len(points):
        return []
    if "n_tasks" not in points:
        points = points.assign(n_tasks=np.nan)
    panels = scaling_panels(points)
    families = list(dict.fromkeys(points["family"]))
    colors = method_colors(families)
    labels = scaling_labels(points)
    fig, axes, spare = _grid(len(panels), 3, 4.4, 3.3)
    one_seed = set()
    for ax, (ptitle, gs) in zip(axes, panels):
        sub = points.loc[points["group"] == gs[0]]
        mixed = sub["n_tasks"].nunique() > 1      # lines over different task sets
        for fam in families:
            f = sub.loc[sub["family"] == fam].sort_values("x")
            if not len(f):
                continue
            err = np.vstack([f["mean"] - f["mean_ci_low"], f["mean_ci_high"] - f["mean"]])
            ax.errorbar(f["x"], f["mean"], yerr=err, color=colors[fam], marker="o", ms=4,
                        lw=1.5, capsize=3, label=labels[fam])
            if "n_seeds_max" in f:
                one = f.loc[f["n_seeds_max"].eq(1)]
                if len(one):
                    ax.plot(one["x"], one["mean"], "o", ms=6, mfc="white",
                            mec=colors[fam], zorder=5)
                    one_seed.update(one["method"])
            if mixed:                                 # say which line holds how many
                last = f.iloc[-1]
                ax.annotate(f"{int(last['n_tasks'])} tasks", (last["x"], last["mean"]),
                            fontsize=7, color=colors[fam], xytext=(4, -9),
                            textcoords="offset points")
            if annotate and f["method"].nunique() > 1:
                for r in f.itertuples():
                    ax.annotate(r.method, (r.x, r.mean), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        xs = sorted(sub["x"].unique())
        if log2:
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
        else:
            ax.set_xscale("log")
            far = len(xs) <= 5 and all(b / a >= 1.25 for a, b in zip(xs, xs[1:]))
            if far:
                ax.set_xticks(xs)
            else:
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            if len(xs) == 1:
                ax.set_xlim(xs[0] / 2, xs[0] * 2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, _: _readable(x)))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(_wrap(ptitle, 4.2, 10), fontsize=10)
        ax.set_xlabel(x_label)
        ax.set_ylabel("mean normalised score")
        ax.grid(alpha=0.3)
    handles = [matplotlib.lines.Line2D([], [], color=colors[f], marker="o", lw=1.5)
               for f in families]
    if one_seed:
        title += f"\nhollow points: {ONE_SEED} ({', '.join(sorted(one_seed))})"
    _finish(fig, title, spare, handles, [labels[f] for f in families])
    return _save(fig, out_dir, name)
