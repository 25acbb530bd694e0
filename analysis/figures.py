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


def _frames_axis(ax, frames_max: float) -> None:
    ax.set_xlim(0, frames_max)
    if frames_max >= 1e5:
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, _: f"{x / 1e6:g}M" if x else "0"))


def _finish(fig, title: str, spare, handles, labels, ncol: int = 5) -> None:
    """Title, layout and one legend for the whole figure: inside the empty grid cells when
    there are any, else in a strip below the panels."""
    fig.suptitle(title)
    if not labels:
        fig.tight_layout()
        return
    if spare:
        fig.tight_layout()
        ax = spare[0]
        ax.set_visible(True)
        ax.axis("off")
        ax.legend(handles, labels, loc="upper left", frameon=False,
                  ncol=max(1, min(len(spare), math.ceil(len(labels) / 8))))
        return
    rows = math.ceil(len(labels) / ncol)
    frac = (0.22 * rows + 0.15) / fig.get_figheight()
    fig.tight_layout(rect=(0, frac, 1, 1))
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
    height = sum(0.35 * max(2, summary.loc[(summary["group"] == g)
                                           & summary["mean"].notna()].shape[0]) + 0.7
                 for g in rows)
    fig, axes = plt.subplots(len(rows), len(stats), figsize=(13, height + 0.6), squeeze=False)
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
            ax.set_yticks(y)
            # Partial coverage shows in the label: a mean over 5 of 14 tasks is another thing.
            names = [m if n == e or not e else f"{m} ({n}/{e} tasks)" for m, n, e in
                     zip(sub.index, sub["n_tasks"], sub["n_tasks_expected"])]
            ax.set_yticklabels(names if j == 0 else [])
            ax.set_ylim(-0.6, len(sub) - 0.4)
            ax.grid(axis="x", alpha=0.3)
            if i == 0:
                ax.set_title(STAT_TITLES[s])
            if j == 0:
                ax.set_ylabel(GROUP_TITLES.get(g, g), fontweight="bold")
            if i == len(rows) - 1:
                ax.set_xlabel("normalised score")
    fig.suptitle(f"Aggregate scores at {frames / 1e6:g}M frames (95% stratified bootstrap CIs;"
                 f" lower optimality gap is better)", y=1.0)
    fig.tight_layout()
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


def profiles(data: dict, methods, colors, out_dir: Path, frames: int) -> list[str]:
    """data: group -> {method: (taus, Interval over taus)}. One panel per group."""
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
    _finish(fig, f"Performance profiles at {frames / 1e6:g}M frames (95% CIs)", spare,
            _method_handles(shown, colors), shown)
    return _save(fig, out_dir, "performance_profiles")


def improvement(rows, reference: str, colors, out_dir: Path, frames: int) -> list[str]:
    """rows: list of (other method, Interval, n shared tasks)."""
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    for k, (m, iv, n) in enumerate(rows):
        ax.barh(y[k], iv.high - iv.low, left=iv.low, height=0.6, color=colors[m], alpha=0.75)
        ax.plot([iv.point, iv.point], [y[k] - 0.3, y[k] + 0.3], color="k", lw=1.2)
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{reference} > {m}  ({n} tasks)" for m, _, n in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"P({reference} > other): per-task probability of a higher score, "
                  "mean over shared tasks")
    ax.set_title(f"Probability of improvement at {frames / 1e6:g}M frames (95% CIs)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_dir, "probability_of_improvement")


def sample_efficiency(data: dict, grid, methods, colors, out_dir: Path,
                      frames: int) -> list[str]:
    """data: group -> {method: Interval over grid}: IQM of normalised score vs frames."""
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
            ax.plot(grid, iv.point, color=colors[m], lw=1.5)
            ax.fill_between(grid, iv.low, iv.high, color=colors[m], alpha=0.2, lw=0)
            shown.append(m)
        ax.set_title(GROUP_TITLES.get(g, g))
        ax.set_xlabel("environment frames")
        ax.set_ylabel("IQM normalised score")
        _frames_axis(ax, frames)
        ax.grid(alpha=0.3)
    shown = [m for m in methods if m in shown]
    _finish(fig, "Sample efficiency: IQM of normalised score (95% stratified bootstrap CIs)",
            spare, _method_handles(shown, colors), shown)
    return _save(fig, out_dir, "sample_efficiency")


def learning_curves(domain: str, tasks, data: dict, grid, methods, colors, ylabel: str,
                    out_dir: Path, frames: int) -> list[str]:
    """data: task -> {method: (mean, std, n_seeds)} over grid; one panel per task."""
    tasks = [t for t in tasks if data.get(t)]
    if not tasks:
        return []
    ncols = 5 if len(tasks) > 8 else 4
    fig, axes, spare = _grid(len(tasks), ncols, 3.0, 2.3, sharex=True)
    shown = []
    for ax, t in zip(axes, tasks):
        for m in methods:
            if m not in data[t]:
                continue
            mu, sd, n = data[t][m]
            ax.plot(grid, mu, color=colors[m], lw=1.2)
            ax.fill_between(grid, mu - sd, mu + sd, color=colors[m], alpha=0.15, lw=0)
            shown.append(m)
        ax.set_title(t, fontsize=9)
        _frames_axis(ax, frames)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes):
        if i + ncols >= len(axes):
            ax.set_xlabel("frames", fontsize=8)
    shown = [m for m in methods if m in shown]
    fig.supylabel(ylabel)
    _finish(fig, f"{GROUP_TITLES.get(domain, domain)}: per-task learning curves "
            f"(mean ± std over seeds)", spare, _method_handles(shown, colors), shown)
    return _save(fig, out_dir, f"learning_curves_{domain}")


DYN_TITLES = {"featnorm": "feature norm", "effective_pnorm": "parameter norm",
              "effective_gnorm": "gradient norm", "effective_lr": "effective LR"}


def dynamics(domain: str, data: dict, modules, quantities, methods, colors, out_dir: Path,
             frames: int, silent=()) -> list[str]:
    """data: method -> {(module, quantity): (grid, mean, low, high, n_runs)}.
    Rows: encoder, predictor; columns: feature / parameter / gradient norm, effective LR.
    `silent`: methods with runs in this domain that logged none of these metrics (named in
    the title)."""
    if not data:
        return []
    fig, axes = plt.subplots(len(modules), len(quantities),
                             figsize=(3.3 * len(quantities), 2.6 * len(modules) + 0.8),
                             squeeze=False)
    shown = []
    for i, mod in enumerate(modules):
        for j, q in enumerate(quantities):
            ax = axes[i, j]
            for m in methods:
                d = data.get(m, {}).get((mod, q))
                if d is None:
                    continue
                grid, mu, lo, hi, n = d
                ax.plot(grid, mu, color=colors[m], lw=1.4, marker="o" if len(grid) == 1 else None, ms=3)
                ax.fill_between(grid, lo, hi, color=colors[m], alpha=0.15, lw=0)
                shown.append(m)
            if q in ("effective_gnorm", "effective_lr"):
                ax.set_yscale("log")
            ax.set_title(f"critic {mod}: {DYN_TITLES.get(q, q)}")
            _frames_axis(ax, frames)
            ax.grid(alpha=0.3)
            if i == len(modules) - 1:
                ax.set_xlabel("environment frames")
    shown = [m for m in methods if m in shown]
    title = (f"{GROUP_TITLES.get(domain, domain)}: norm and effective-LR dynamics "
             f"(mean over runs, band = min..max)")
    if silent:
        title += f"\nno such metrics logged by: {', '.join(silent)}"
    _finish(fig, title, [], _method_handles(shown, colors), shown)
    return _save(fig, out_dir, f"dynamics_{domain}")


def scaling(points, x_label: str, name: str, log2: bool, out_dir: Path, title: str,
            annotate: bool = False) -> list[str]:
    """points: DataFrame with family, method, group, x, mean, mean_ci_low, mean_ci_high.
    One panel per group, one line per family (sorted by x)."""
    if points is None or not len(points):
        return []
    groups = list(dict.fromkeys(points["group"]))
    families = list(dict.fromkeys(points["family"]))
    colors = method_colors(families)
    fig, axes, spare = _grid(len(groups), 3, 4.2, 3.2)
    for ax, g in zip(axes, groups):
        sub = points.loc[points["group"] == g]
        for fam in families:
            f = sub.loc[sub["family"] == fam].sort_values("x")
            if not len(f):
                continue
            err = np.vstack([f["mean"] - f["mean_ci_low"], f["mean_ci_high"] - f["mean"]])
            ax.errorbar(f["x"], f["mean"], yerr=err, color=colors[fam], marker="o", ms=4,
                        lw=1.5, capsize=3, label=fam)
            if annotate:
                for r in f.itertuples():
                    ax.annotate(r.method, (r.x, r.mean), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        if log2:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(sub["x"].unique()))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(GROUP_TITLES.get(g, g))
        ax.set_xlabel(x_label)
        ax.set_ylabel("mean normalised score")
        ax.grid(alpha=0.3)
    handles = [matplotlib.lines.Line2D([], [], color=colors[f], marker="o", lw=1.5)
               for f in families]
    _finish(fig, title, spare, handles, families)
    return _save(fig, out_dir, name)
