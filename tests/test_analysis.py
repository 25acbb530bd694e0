"""analysis/: Table 1 from the published files, name spellings, the statistics' axis contract,
seeded bootstrap, incomplete runs in a run store, and the make_figures command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rliable import metrics as rly

from analysis import aggregates, bootstrap, scores
from analysis.load import load_results
from analysis.make_figures import main
from analysis.matrix import RunScores

REPO = Path(__file__).resolve().parents[1]
TABLE1_SIMBAV2_UTD2 = {"mujoco": 1.617, "dmc-em": 0.874, "dmc-hard": 0.729, "myosuite": 0.847,
                       "hbench": 0.776, "all": 0.892}


def _means(path_or_paths, frames=1_000_000, **kw) -> dict[str, dict[str, float]]:
    """method -> group -> Table 1 mean (point estimate only, no bootstrap)."""
    paths = path_or_paths if isinstance(path_or_paths, list) else [path_or_paths]
    res = load_results([str(p) for p in paths])
    sc = scores.score_at(res, frames)
    out = {}
    for m in res.methods:
        out[m] = {}
        for g in scores.GROUPS:
            gs = scores.group_scores(sc, m, g, **kw)
            if gs.final is not None:
                out[m][g] = float(aggregates.mean(gs.final.scores,
                                                  gs.final.valid[None].astype(float))[0])
    return out


# -- the published files ---------------------------------------------------------------------

def test_simbav2_utd2_reproduces_table1(results_dir):
    got = _means(results_dir / "simbaV2_utd2.csv")["simbaV2_utd2"]
    for g, want in TABLE1_SIMBAV2_UTD2.items():
        assert got[g] == pytest.approx(want, abs=0.002), g


def test_all_truncates_each_domain_like_table1(results_dir):
    # BRO and Simba have 5 seeds on some domains and 10-15 on others: Table 1's "All" column
    # (0.807, 0.780) matches truncating each domain to its own smallest seed count; the
    # global truncation gives 0.805 and 0.785 (docs/published-results.md).
    bro = _means(results_dir / "baseline" / "bro_utd10.csv")["bro_utd10"]
    simba = _means(results_dir / "scaling" / "utd" / "simba_utd2.csv")["simba_utd2"]
    assert bro["all"] == pytest.approx(0.807, abs=0.002)
    assert simba["all"] == pytest.approx(0.780, abs=0.002)
    glob = _means(results_dir / "baseline" / "bro_utd10.csv", all_truncate="global")
    assert glob["bro_utd10"]["all"] == pytest.approx(0.805, abs=0.002)


def test_repeated_seed_rows_keep_the_first_run(results_dir):
    # scaling/utd/simba_utd8.csv appends re-runs under the same seed labels; keeping the first
    # occurrence gives Table 1's Simba (UTD 8) HBench 0.657 (the last would give 0.669).
    res = load_results([str(results_dir / "scaling" / "utd" / "simba_utd8.csv")])
    assert any("kept the first occurrence" in n for n in res.notes)
    got = _means(results_dir / "scaling" / "utd" / "simba_utd8.csv")["simba_utd8"]
    assert got["hbench"] == pytest.approx(0.657, abs=0.002)
    assert got["all"] == pytest.approx(0.818, abs=0.002)


def test_evaluation_grid_that_skips_the_budget(results_dir):
    # SAC's MuJoCo runs evaluate every 16,666 frames (999,960 then 1,016,626) up to 5M:
    # the last evaluation within the tolerance before 1M is its score (Table 1: 1.092).
    got = _means(results_dir / "baseline" / "sac.csv")["sac"]
    assert got["mujoco"] == pytest.approx(1.092, abs=0.002)


def test_spellings_between_files_do_not_matter(results_dir):
    # Same runs, spelled h1-pole-v0 / h1_pole_v0 and Humanoid-v4 / Humanoid_v4, with seed
    # labels permuted between the copies.
    a = _means(results_dir / "simbaV2_utd2.csv")["simbaV2_utd2"]
    b = _means(results_dir / "scaling" / "utd" / "simbaV2_utd2.csv")["simbaV2_utd2"]
    c = _means(results_dir / "simbaV2_utd8.csv")["simbaV2_utd8"]
    d = _means(results_dir / "baseline" / "simbaV2_utd8.csv")["simbaV2_utd8"]
    assert set(a) == set(b) == set(c) == set(d) == set(scores.GROUPS)
    for g in a:
        assert a[g] == pytest.approx(b[g], abs=1e-9), g
        assert c[g] == pytest.approx(d[g], abs=1e-9), g
    raw = pd.read_csv(results_dir / "scaling" / "utd" / "simbaV2_utd2.csv", index_col=0)
    assert "h1_pole_v0" in set(raw["env_name"])   # the test means something


def test_copy_of_a_file_is_recognised(results_dir):
    res = load_results([str(results_dir / "simbaV2_utd2.csv"),
                        str(results_dir / "scaling" / "utd" / "simbaV2_utd2.csv")])
    assert res.methods == ["simbaV2_utd2"]
    assert any("is a copy" in n for n in res.notes)
    per_task = res.runs.groupby("task").size()
    assert len(per_task) == 57 and (per_task == 10).all()


# -- statistics -----------------------------------------------------------------------------

def test_statistics_equal_rliable_on_a_full_matrix():
    x = np.random.default_rng(0).normal(0.7, 0.4, size=(7, 13))          # (runs, tasks)
    rs = RunScores.from_matrix(x, [f"t{i}" for i in range(13)])
    ones = rs.valid[None].astype(float)
    assert aggregates.iqm(rs.scores, ones)[0] == pytest.approx(rly.aggregate_iqm(x))
    assert aggregates.median(rs.scores, ones)[0] == pytest.approx(rly.aggregate_median(x))
    assert aggregates.mean(rs.scores, ones)[0] == pytest.approx(rly.aggregate_mean(x))
    assert aggregates.optimality_gap(rs.scores, ones)[0] == pytest.approx(
        rly.aggregate_optimality_gap(x))
    # A resample as counts gives what rliable computes on the explicitly resampled matrix.
    counts = bootstrap.resample_counts(rs.n_per_task, rs.n_runs, 4, np.random.default_rng(1))
    assert (counts.sum(axis=1) == 7).all()
    for b in range(4):
        explicit = np.stack([np.repeat(x[:, t], counts[b, :, t]) for t in range(13)], axis=1)
        assert aggregates.iqm(rs.scores, counts[b:b + 1])[0] == pytest.approx(
            rly.aggregate_iqm(explicit))
        assert aggregates.median(rs.scores, counts[b:b + 1])[0] == pytest.approx(
            rly.aggregate_median(explicit))


def test_wrongly_oriented_input_is_rejected():
    x = np.zeros((5, 12))                       # 5 runs of 12 tasks
    tasks = [f"t{i}" for i in range(12)]
    RunScores.from_matrix(x, tasks)
    with pytest.raises(ValueError, match=r"\('runs', 'tasks'\).*transposed"):
        RunScores.from_matrix(x.T, tasks)       # (tasks, runs), as the notebooks passed it
    with pytest.raises(ValueError, match="runs"):
        RunScores.from_matrix(np.zeros(12), tasks)
    rs = RunScores.from_matrix(x, tasks)
    with pytest.raises(ValueError, match="weights"):
        aggregates.mean(rs.scores, np.ones((3, 12, 5)))


def test_unequal_seed_counts():
    df = pd.DataFrame({"task": ["a"] * 3 + ["b"] * 5, "seed": [7, 3, 5, 0, 1, 2, 3, 4],
                       "norm": [0.3, 0.1, 0.2, 1, 2, 3, 4, 5]})
    rs = RunScores.from_long(df)
    assert rs.scores.shape == (5, 2) and list(rs.n_per_task) == [3, 5]
    assert list(rs.seeds[:3, 0]) == [3, 5, 7] and np.isnan(rs.scores[3:, 0]).all()
    # Pooled mean (Table 1 rule): a task weighs by its seed count.
    assert aggregates.mean(rs.scores, rs.valid[None].astype(float))[0] == pytest.approx(
        df["norm"].mean())
    # Each task is resampled from its own seeds only.
    c = bootstrap.resample_counts(rs.n_per_task, rs.n_runs, 50, np.random.default_rng(0))
    assert (c[:, 3:, 0] == 0).all() and (c.sum(axis=1) == [3, 5]).all()
    assert rs.truncate(2).n_per_task.tolist() == [2, 2]
    assert rs.to_rliable().shape == (3, 2)


def test_bootstrap_repeats_with_the_same_seed(results_dir):
    res = load_results([str(results_dir / "simbaV2_utd2.csv")])
    sc = scores.score_at(res, 1_000_000)
    rs = scores.group_scores(sc, "simbaV2_utd2", "dmc-hard").final

    def run(seed):
        iv = bootstrap.interval_estimates(rs, 300, bootstrap.rng_for(seed, "m", "g"))
        return np.array([[iv[k].low, iv[k].high] for k in aggregates.STATISTICS])

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # The point estimate sits inside its interval.
    iv = bootstrap.interval_estimates(rs, 300, bootstrap.rng_for(0))
    assert iv["mean"].low <= iv["mean"].point <= iv["mean"].high


def test_probability_of_improvement():
    tasks = ["a", "b"]
    hi = RunScores.from_matrix(np.array([[2.0, 2.0], [3.0, 3.0]]), tasks)
    lo = RunScores.from_matrix(np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]), tasks)
    iv = bootstrap.probability_of_improvement(hi, lo, 100, bootstrap.rng_for(0))
    assert iv.point == 1.0 and iv.low == 1.0
    tie = bootstrap.probability_of_improvement(hi, hi, 100, bootstrap.rng_for(0))
    assert tie.point == pytest.approx(0.5)


# -- run store and the command ------------------------------------------------------------------

FRAMES = 100_000


def _make_run(root: Path, exp: str, task: str, seed: int, *, stop=None, state="completed",
              width=128, upf=1.0, metric="avg_return", scale=1000.0, evals=True,
              metrics=True):
    d = root / exp / task / f"seed_{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "run_id": f"{exp}-{task}-{seed}", "exp": exp, "task": task, "seed": seed,
        "frames": FRAMES, "agent": {"name": "simbav2", "label": "simbav2"},
        # analysis reads sizes only from the agent-independent `scale` record
        "scale": {"width": width, "depth": 2, "updates_per_frame": upf, "utd_paper": 2 * upf,
                  "params": {"actor": 1000, "critic": 100 * width, "total": 1000 + 100 * width},
                  "flops_per_update": 1e6 * width}}))
    last = FRAMES if stop is None else stop
    (d / "status.json").write_text(json.dumps({
        "state": state, "reason": None, "frames_done": last, "wall_time_s": 720.0 * width / 128,
        "device": "cpu"}))
    if not evals:
        return d
    steps = np.arange(0, last + 1, FRAMES // 5)
    value = steps / FRAMES * scale * (0.4 + 0.1 * seed + width / 1024)
    pd.DataFrame({"exp_name": exp, "env_name": task, "seed": seed, "metric": metric,
                  "env_step": steps, "value": value}).to_csv(d / "eval.csv", index=False)
    if not metrics:
        return d
    f = np.arange(0, last + 1, FRAMES // 10)
    cols = {"frames": f, "critic/loss": np.linspace(1, 0.1, len(f))}
    for mod in ("encoder", "predictor"):
        cols[f"critic/{mod}/featnorm"] = 1.0 + 0 * f
        cols[f"critic/{mod}/effective_pnorm"] = 36.0 + f / FRAMES
        g = 1e-4 * (1 + 0.1 * np.sin(f / 1e4))
        g[::3] = np.nan                          # not computed at every log point
        cols[f"critic/{mod}/effective_gnorm"] = g
        cols[f"critic/{mod}/effective_lr"] = 1e-4 + 0 * f
    pd.DataFrame(cols).to_parquet(d / "metrics.parquet")
    return d


@pytest.fixture
def store_root(tmp_path) -> Path:
    root = tmp_path / "runs"
    for exp, width in (("w128", 128), ("w256", 256)):
        for task, metric, scale in (("Hopper-v4", "avg_return", 3000.0),
                                    ("cartpole-balance", "avg_return", 1000.0),
                                    ("myo-reach", "avg_success", 1.0)):
            for seed in (0, 1):
                # Norm dynamics on one domain only: one dynamics figure keeps the test fast.
                _make_run(root, exp, task, seed, width=width, metric=metric, scale=scale,
                          metrics=task == "Hopper-v4")
    _make_run(root, "w256", "Hopper-v4", 2, stop=60_000, state="running")   # unfinished
    _make_run(root, "w256", "cartpole-balance", 2, state="pending", evals=False)
    return root


def test_store_with_unfinished_runs(store_root):
    res = load_results([str(store_root)])
    assert res.methods == ["w128", "w256"]
    sc = scores.score_at(res, FRAMES)
    inc = sc.incomplete.set_index(["method", "task", "seed"])
    assert len(inc) == 2
    hop = inc.loc[("w256", "Hopper-v4", 2)]
    assert hop["last_frames"] == 60_000 and "stopped at 60000" in hop["reason"]
    assert "running" in hop["reason"]
    assert "no evaluation" in inc.loc[("w256", "cartpole-balance", 2)]["reason"]
    # Excluded: only the two complete seeds are scored.
    w256 = sc.scores.loc[sc.scores["method"] == "w256"]
    assert len(w256) == 6 and set(w256["seed"]) == {0, 1}
    assert set(w256["width"]) == {256.0} and set(w256["utd"]) == {2.0}


def test_make_figures_end_to_end(store_root, tmp_path, capsys):
    out = tmp_path / "out"
    args = [f"results={store_root}", f"out={out}", "frames=100k", "reps=100", "seed=3"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 run(s) have no score" in err and "incomplete.csv" in err
    summary = pd.read_csv(out / "summary.csv")
    need = {"method", "group", "n_tasks", "n_seeds", "mean", "mean_ci_low", "mean_ci_high",
            "iqm", "iqm_ci_low", "iqm_ci_high", "median", "optimality_gap"}
    assert need <= set(summary.columns)
    assert set(summary["group"]) >= {*scores.DOMAINS, "all"}
    row = summary.set_index(["method", "group"]).loc[("w256", "mujoco")]
    assert row["n_tasks"] == 1 and row["n_seeds"] == 2
    assert np.isnan(summary.set_index(["method", "group"]).loc[("w256", "all"), "mean"])
    per_task = pd.read_csv(out / "per_task.csv")
    hop = per_task.set_index(["method", "task"]).loc[("w256", "Hopper-v4")]
    assert hop["n_seeds"] == 2 and hop["n_incomplete"] == 1
    assert len(pd.read_csv(out / "incomplete.csv")) == 2
    figs = {p.stem for p in (out / "figures").glob("*.png")}
    assert {p.stem for p in (out / "figures").glob("*.pdf")} == figs
    assert {"aggregates", "performance_profiles", "probability_of_improvement",
            "sample_efficiency", "learning_curves_mujoco", "dynamics_mujoco", "scaling_width",
            "scaling_compute"} <= figs
    report = (out / "report.md").read_text()
    for f in figs:
        assert f"figures/{f}.png" in report
    assert "Incomplete runs" in report
    # The command's intervals are the seeded bootstrap of that (method, group): recomputing
    # one gives the same numbers, whatever other methods were in the run.
    sc = scores.score_at(load_results([str(store_root)]), FRAMES)
    rs = scores.group_scores(sc, "w256", "myosuite").final
    iv = bootstrap.interval_estimates(rs, 100, bootstrap.rng_for(3, "w256", "myosuite"))
    row = summary.set_index(["method", "group"]).loc[("w256", "myosuite")]
    for stat in aggregates.STATISTICS:
        assert row[f"{stat}_ci_low"] == pytest.approx(float(iv[stat].low), rel=1e-5)
        assert row[f"{stat}_ci_high"] == pytest.approx(float(iv[stat].high), rel=1e-5)


def test_labels_and_method_selection(store_root, tmp_path, results_dir):
    out = tmp_path / "o"
    one = str(results_dir / "baseline" / "crossq.csv")
    assert main([f"results={one},{store_root}", f"out={out}", "frames=1M", "reps=20",
                 f"label={one}:CQ,w128:small", "methods=small,CQ"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(dict.fromkeys(summary["method"])) == ["small", "CQ"]


@pytest.mark.parametrize("args,needle", [
    (["results=x", "bogus=1"], "unknown key 'bogus'"),
    (["out=o"], "results= is required"),
    (["results=/nonexistent/file.csv"], "does not exist"),
    (["results=x", "frames=lots"], "bad value 'lots' for frames"),
    (["results=x", "include_unknown=maybe"], "include_unknown"),
    (["results=x", "all_truncate=some"], "valid: domain, global"),
    (["results=x", "reps=0"], "reps"),
    (["results=x", "out=/proc/x"], "cannot write under"),
])
def test_bad_arguments_exit_2(args, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err


def test_bad_reference_and_wide_csv(store_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([f"results={store_root}", f"out={tmp_path / 'o'}", "reference=nope"])
    assert e.value.code == 2 and "valid: w128, w256" in capsys.readouterr().err
    wide = tmp_path / "wide.csv"
    pd.DataFrame(np.zeros((3, 4)), columns=["Hopper-v4", "a", "b", "c"]).to_csv(wide)
    with pytest.raises(SystemExit) as e:
        main([f"results={wide}", f"out={tmp_path / 'o'}"])
    assert e.value.code == 2 and "not in the long format" in capsys.readouterr().err


def test_module_entry_point_rejects_bad_keys():
    p = subprocess.run([sys.executable, "-m", "analysis.make_figures", "results=x", "frame=1"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "unknown key 'frame'" in p.stderr and "frames" in p.stderr


def _tiny_published(path: Path) -> Path:
    """A small long-format file: two spellings of known tasks, a task outside the 57, a run
    whose grid skips 1M (16,666 steps, continues past it) and one that stops just short."""
    rows = []
    grid = np.arange(0, 1_050_000, 16_666)
    for env, seed, stop in (("Hopper_v4", 0, None), ("Hopper-v4", 1, None),
                            ("cup-catch", 0, None), ("cup-catch", 1, 999_960),
                            ("mw-assembly", 0, None)):
        steps = grid if stop is None else grid[grid <= stop]
        for s in steps:
            rows.append(("demo", env, seed, "avg_return", s, 1000.0 * s / 1e6))
    df = pd.DataFrame(rows, columns=["exp_name", "env_name", "seed", "metric", "env_step",
                                     "value"])
    df.to_csv(path)   # with the unnamed index column, as the published files
    return path


def test_tolerance_spellings_and_unknown_tasks(tmp_path, capsys):
    csv = _tiny_published(tmp_path / "demo.csv")
    res = load_results([str(csv)])
    assert res.unknown_tasks == {"demo": ["mw-assembly"]}
    sc = scores.score_at(res, 1_000_000)
    known = sc.scores.loc[sc.scores["domain"] != "other"]
    assert set(known["task"]) == {"Hopper-v4", "ball_in_cup-catch"}
    assert set(known["score_step"]) == {999_960}
    inc = sc.incomplete
    assert list(inc["task"]) == ["ball_in_cup-catch"] and list(inc["last_frames"]) == [999_960]
    strict = scores.score_at(res, 1_000_000, tol=0)
    assert len(strict.scores) == 0

    out = tmp_path / "o"
    assert main([f"results={csv}", f"out={out}", "reps=20"]) == 0
    assert "mw-assembly" not in set(pd.read_csv(out / "per_task.csv")["task"])
    assert "other" not in set(pd.read_csv(out / "summary.csv")["group"])
    assert main([f"results={csv}", f"out={out}", "reps=20", "include_unknown=true"]) == 0
    summary = pd.read_csv(out / "summary.csv").set_index(["method", "group"])
    assert summary.loc[("demo", "other"), "n_tasks"] == 1
    assert summary.loc[("demo", "mujoco"), "n_seeds"] == 2


def test_curve_end_matches_final_scores(results_dir):
    res = load_results([str(results_dir / "simbaV2_utd2.csv")])
    sc = scores.score_at(res, 1_000_000)
    grid = scores.curve_grid(1_000_000)
    curves = scores.normalise(sc.scores["task"], scores.run_curves(res, sc, grid))
    gs = scores.group_scores(sc, "simbaV2_utd2", "hbench", curves[:, 1:])
    iv = bootstrap.interval_estimates(gs.final, 200, bootstrap.rng_for(0), curves=gs.curves)
    assert iv["curve"].point.shape == (len(grid) - 1,)
    for k in ("point", "low", "high"):
        assert getattr(iv["curve"], k)[-1] == pytest.approx(getattr(iv["iqm"], k))


def test_label_for_a_folder_of_several_methods_is_refused(tmp_path, capsys):
    folder = tmp_path / "res"
    folder.mkdir()
    a = _tiny_published(folder / "a.csv")
    df = pd.read_csv(a, index_col=0).assign(exp_name="other_demo")
    df.to_csv(folder / "b.csv")
    with pytest.raises(SystemExit) as e:
        main([f"results={folder}", f"out={tmp_path / 'o'}", "label=X"])
    assert e.value.code == 2
    assert "holds several methods (demo, other_demo)" in capsys.readouterr().err
    res = load_results([str(folder)], by_exp={"other_demo": "B"})
    assert res.methods == ["demo", "B"]
