"""Figures that never mislead: task sets of scaling lines, per-panel compute, curves at real
evaluation steps, single-seed intervals, readable axes. Hand-made data; the drawn matplotlib
figures are inspected (figures._save is intercepted)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import figures, report, scaling, scores

HB = scores.GROUP_TASKS["hbench"]
HARD = scores.GROUP_TASKS["hbench-hard"]


@pytest.fixture
def drawn(monkeypatch):
    """Figures drawn by the function under test, by name (not written to disk)."""
    got = {}

    def save(fig, out_dir, name):
        fig.canvas.draw()
        got[name] = fig
        return [f"{name}.png"]

    monkeypatch.setattr(figures, "_save", save)
    yield got
    import matplotlib.pyplot as plt
    plt.close("all")


def _summary_row(method, group, n_tasks, expected, mean, n_seeds=5, width=0.05):
    return {"method": method, "group": group, "n_tasks": n_tasks, "n_tasks_expected": expected,
            "n_seeds": n_seeds, "n_seeds_max": n_seeds, "mean": mean,
            "mean_ci_low": mean - width, "mean_ci_high": mean + width}


def _width_case():
    """simbaV2 widths 128/256/1024 on the 5 HBench-hard tasks, 512 on all 14 (the published
    layout); simba widths 128/256 on all 14."""
    rows, tasks_of = [], {}
    for w, mean in ((128, 0.37), (256, 0.70), (512, 0.77), (1024, 0.92)):
        m = f"simbaV2_cwidth{w}"
        ts = HB if w == 512 else HARD
        rows.append(_summary_row(m, "hbench", len(ts), 14, mean))
        rows.append(_summary_row(m, "hbench-hard", 5, 5, mean + 0.01))
        tasks_of[(m, "hbench")] = frozenset(ts)
        tasks_of[(m, "hbench-hard")] = frozenset(HARD)
    for w, mean in ((128, 0.4), (256, 0.5)):
        m = f"simba_cwidth{w}"
        rows.append(_summary_row(m, "hbench", 14, 14, mean))
        tasks_of[(m, "hbench")] = frozenset(HB)
    summary = pd.DataFrame(rows)
    facts = pd.DataFrame([{"method": m, **scaling.parse_name(m), "hours": np.nan}
                          for m in dict.fromkeys(summary["method"])])
    return summary, facts, tasks_of


def test_scaling_line_never_mixes_task_sets(drawn, tmp_path):
    summary, facts, tasks_of = _width_case()
    pts = scaling.scaling_points(summary, facts, "width", ("hbench-hard", "hbench"), tasks_of)
    for (g, fam), line in pts.groupby(["group", "family"]):
        sets = {tasks_of[(m, g)] for m in line["method"]}
        assert len(sets) == 1, (g, fam, sets)              # one task set per line
        assert set(line["n_tasks"]) == {len(next(iter(sets)))}
    hb = pts.loc[(pts["group"] == "hbench") & (pts["family"] == "simbaV2")]
    assert sorted(hb["x"]) == [128, 256, 1024]             # the 14-task 512 point is left out
    figures.scaling(pts, "critic width", "scaling_width", True, tmp_path, "t")
    fig = drawn["scaling_width"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles[0] == "HBench-hard (5 of 5 tasks)"
    # HBench holds a 5-task line and a 14-task line: the title gives both counts and every
    # line is labelled with its own.
    assert titles[1] == "HBench (5 or 14 of 14 tasks)"
    texts = {t.get_text() for t in fig.axes[1].texts}
    assert {"5 tasks", "14 tasks"} <= texts


def test_compute_x_is_per_panel_and_labels_agree(drawn, tmp_path):
    sc = pd.DataFrame({"method": "demo", "task": ["Hopper-v4"] * 2 + ["cartpole-balance"] * 2,
                       "state": "completed", "wall_time_s": [7200.0, 7200.0, 360.0, 360.0],
                       "agent": "simbav2"})
    tasks_of = {("demo", "mujoco"): frozenset({"Hopper-v4"}),
                ("demo", "dmc-em"): frozenset({"cartpole-balance"})}
    hours = scaling.group_hours(sc, tasks_of)
    assert hours == {("demo", "mujoco"): 2.0, ("demo", "dmc-em"): 0.1}
    summary = pd.DataFrame([_summary_row("demo", "mujoco", 1, 5, 0.3),
                            _summary_row("demo", "dmc-em", 1, 21, 0.6)])
    facts = scaling.method_facts(sc, ["demo"])
    assert facts.loc[0, "family"] == "simbav2"
    pts = scaling.scaling_points(summary, facts, "hours", ("mujoco", "dmc-em"), tasks_of, 1,
                                 x_of=hours)
    assert dict(zip(pts["group"], pts["x"])) == {"mujoco": 2.0, "dmc-em": 0.1}
    figures.scaling(pts, "CPU-hours per run", "scaling_compute", False, tmp_path, "t",
                    annotate=True)
    fig = drawn["scaling_compute"]
    ticks = [t.get_text() for ax in fig.axes if ax.get_visible()
             for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(len(t) <= 5 for t in ticks), ticks    # no seven-digit ticks
    legend = [t.get_text() for lg in fig.legends + [ax.get_legend() for ax in fig.axes
                                                     if ax.get_legend()] for t in lg.get_texts()]
    assert legend == ["demo (simbav2)"]                # the method name and its family


def test_curves_are_drawn_at_the_evaluation_steps():
    steps = np.array([0, 1000, 3000, 4000])
    c = scores.combine_runs([(steps, [0.0, 5.0, 1.0, 7.0]), (steps, [2.0, 7.0, 3.0, 9.0])])
    assert c.shared and list(c.steps) == [0, 1000, 3000, 4000]
    assert list(c.mean) == [1.0, 6.0, 2.0, 8.0]          # the dip at 3000 stays at 3000
    # Seeds evaluated at different steps: interpolated onto the union, never extrapolated.
    c = scores.combine_runs([([0, 2000], [0.0, 2.0]), ([1000, 3000], [10.0, 30.0])])
    assert not c.shared and list(c.steps) == [0, 1000, 2000, 3000]
    assert c.mean == pytest.approx([0.0, 5.5, 11.0, 30.0])
    assert c.n_runs == 2


def test_sample_efficiency_grid_starts_at_frame_0():
    grid = scores.curve_grid(1_000_000)
    assert grid[0] == 0 and grid[-1] == 1_000_000


def test_learning_curve_figure(drawn, tmp_path):
    steps = np.arange(0, 11) * 100
    c2 = scores.combine_runs([(steps, np.clip(steps / 900, 0, 1)),
                              (steps, np.clip(steps / 1100, 0, 1))])
    c1 = scores.combine_runs([(steps, np.full(len(steps), 0.02))])
    data = {"myo-reach": {"a": c2, "b": c1}}
    colors = figures.method_colors(["a", "b"])
    figures.learning_curves("myosuite", ["myo-reach"], data, ["a", "b"], colors,
                            "success rate", tmp_path, 1000)
    fig = drawn["learning_curves_myosuite"]
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]
    assert list(lines[0].get_xdata()) == list(steps)      # real evaluations, frame 0 included
    assert lines[0].get_marker() == "o"                   # few points: marked
    lo, hi = ax.get_ylim()
    assert -0.05 <= lo < 0 and 1 < hi <= 1.05             # success rate kept in [0, 1]
    labels = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    labels += [t.get_text() for a in fig.axes if a.get_legend() for t in
               a.get_legend().get_texts()]
    assert "b (1 seed: no band)" in labels and "a" in labels


def test_one_seed_is_said_in_figures_and_report(drawn, tmp_path):
    summary = pd.DataFrame([_summary_row("one", "mujoco", 5, 5, 0.5, n_seeds=1, width=0.0),
                            _summary_row("many", "mujoco", 5, 5, 0.6)])
    for s in ("iqm", "median", "optimality_gap"):
        for suffix in ("", "_ci_low", "_ci_high"):
            summary[s + suffix] = summary["mean" + suffix]
    colors = figures.method_colors(["one", "many"])
    figures.aggregates(summary, ["one", "many"], ["mujoco"], colors, tmp_path, 1_000_000)
    fig = drawn["aggregates"]
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["one (1 seed: no interval)", "many"]
    assert "1 seed: no interval" in fig._suptitle.get_text()
    assert figures.single_seed_groups(summary) == {"one": {"mujoco"}}
    cell = report._with_ci(summary.iloc[0], "mean")
    assert cell == "0.500 (1 seed: no interval)"
    assert "[" in report._with_ci(summary.iloc[1], "mean")
    assert "one (MuJoCo (5))" in report.single_seed_note(summary)[0]


def test_dynamics_at_logged_frames_with_plain_ticks(drawn, tmp_path):
    frames = np.array([500.0, 1000.0, 1500.0, 2000.0])
    data = {"m": {("encoder", "effective_pnorm"): scores.combine_runs(
        [(frames, 36.0 + frames / 1e5), (frames, 36.01 + frames / 1e5)]),
        ("encoder", "effective_lr"): scores.combine_runs([(frames, [1e-4, 2e-4, 3e-4, 1e-4])])}}
    figures.dynamics("mujoco", data, ("encoder",), ("effective_pnorm", "effective_lr"), ["m"],
                     figures.method_colors(["m"]), tmp_path, 2000)
    fig = drawn["dynamics_mujoco"]
    norm_ax, lr_ax = fig.axes[:2]
    line = [ln for ln in norm_ax.get_lines() if len(ln.get_xdata()) > 1][0]
    assert list(line.get_xdata()) == list(frames)           # where they were logged
    assert norm_ax.yaxis.get_offset_text().get_text() == ""  # no "+3.6e1" offset
    for ax in (norm_ax, lr_ax):
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert labels and all("$" not in t and len(t) <= 5 for t in labels), labels


def test_single_panel_titles_are_wrapped(drawn, tmp_path):
    from analysis.bootstrap import Interval
    iv = Interval(np.array(0.6), np.array(0.5), np.array(0.7))
    figures.improvement([("a_rather_long_method_name_for_a_baseline", iv, 57)],
                        "a_rather_long_reference_method_name", figures.method_colors(
                            ["a_rather_long_method_name_for_a_baseline"]), tmp_path, 1_000_000)
    fig = drawn["probability_of_improvement"]
    renderer = fig.canvas.get_renderer()
    fw = fig.get_figwidth() * fig.dpi
    for text in [fig._suptitle, fig.axes[0].xaxis.label]:
        bb = text.get_window_extent(renderer)
        assert bb.x0 >= 0 and bb.x1 <= fw, text.get_text()
