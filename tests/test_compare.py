"""analysis.compare, unit by unit: its statistics and its command line, on data whose answer is
known. About 15 s on 2 cores: no training, one subprocess.

* From the published SimbaV2 file itself (skipped when absent): 3 of its 10 seeds as "ours"
  must be consistent with all 10; the same seeds shifted by +/-0.3 normalised score (applied
  in raw units through each task's normaliser) must be better / worse, with the difference
  and its interval moved by exactly 0.3; the differences equal an independent computation
  with each domain's normaliser and metric.
* Synthetic draws from known normal distributions (no data needed): the interval covers the
  true difference about 95% of the time (a plain percentile bootstrap would not, with 3 vs 10
  seeds), a difference equal to the minimum detectable difference is found about 80% of the
  time, and that difference shrinks with more seeds; Welch SE / df / MDD match their formulas.
* Frames: only frames both sides evaluated are compared (0.5% tolerance, one evaluation never
  used twice); frames= moves the verdict; what was left out is said.
* Bad input: exit 2, a message naming the problem and the valid choices, and an existing out
  folder left byte for byte as it was.
* docs/reproduction-check.md and the README show the real keys and commands.

tests/test_fidelity.py and tests/test_roundtrip.py run compare on real (short) runs; this file
does not repeat that.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import suites
from analysis import compare
from analysis.load import load_results

REPO = Path(__file__).resolve().parents[1]
PRESET = [t.name for t in suites.resolve("fidelity")]
F = 300_000
OURS_SEEDS = [0, 1000, 2000]     # 3 of the 10 published seed labels
COLUMNS = ["exp_name", "env_name", "seed", "metric", "env_step", "value"]


# -- helpers ---------------------------------------------------------------------------------

def long_df(method: str, rows) -> pd.DataFrame:
    """rows: (task, seed, env_step, raw value) -> long format, the task's own metric."""
    out = []
    for task, seed, step, value in rows:
        t = suites.TASKS.get(suites.try_canonical_name(task) or "")
        out.append((method, task, seed, t.metric if t else "avg_return", step, value))
    return pd.DataFrame(out, columns=COLUMNS)


def write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def cli(capsys, *args) -> tuple[int, str, str]:
    """analysis.compare.main in-process: (exit status, stdout, stderr)."""
    try:
        code = compare.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def raw_shift(task: str, by: float) -> float:
    """A difference of `by` in normalised score, in the task's raw units."""
    t = suites.get_task(task)
    low = 0.0 if t.random_score is None else t.random_score
    high = 1.0 if t.reference_score is None else t.reference_score
    return by * (high - low)


def synthetic(tmp: Path, n_ours: int, n_ref: int, diff: float, k: int, seed: int,
              reps: int = 2000):
    """k independent tasks outside the 57 (raw = normalised): ours ~ N(diff, 1) with n_ours
    seeds, reference ~ N(0, 1) with n_ref seeds, one evaluation at frame 1000."""
    rng = np.random.default_rng(seed)
    tasks = [f"synthetic-{i:03d}" for i in range(k)]
    o = [(t, s, 1000, v) for t in tasks for s, v in enumerate(rng.normal(diff, 1.0, n_ours))]
    r = [(t, s, 1000, v) for t in tasks for s, v in enumerate(rng.normal(0.0, 1.0, n_ref))]
    ours = load_results([str(write(long_df("ours", o), tmp / f"o{n_ours}-{seed}.csv"))])
    ref = load_results([str(write(long_df("ref", r), tmp / f"r{n_ref}-{seed}.csv"))])
    return compare.compare(ours, ref, reps=reps, seed=0)


def theoretical_mdd(n_ours: int, n_ref: int, sd: float = 1.0) -> float:
    a, b = sd ** 2 / n_ours, sd ** 2 / n_ref
    df = (a + b) ** 2 / (a ** 2 / (n_ours - 1) + b ** 2 / (n_ref - 1))
    return float((stats.t.ppf(0.975, df) + stats.t.ppf(compare.POWER, df)) * np.sqrt(a + b))


# -- fixtures: the published file -----------------------------------------------------------

@pytest.fixture(scope="module")
def published_df(published) -> pd.DataFrame:
    return pd.read_csv(published)


@pytest.fixture(scope="module")
def ref_results(published):
    return load_results([str(published)])


@pytest.fixture(scope="module")
def ours_csvs(published_df, tmp_path_factory) -> dict[float, Path]:
    """Shift (normalised) -> a CSV of 3 published seeds of the preset tasks, method 'ours'."""
    d = tmp_path_factory.mktemp("ours")
    base = published_df.loc[published_df["env_name"].isin(PRESET)
                            & published_df["seed"].isin(OURS_SEEDS), COLUMNS]
    assert sorted(base["env_name"].unique()) == sorted(PRESET)
    out = {}
    for shift in (0.0, 0.3, -0.3):
        x = base.assign(exp_name="ours").copy()
        for task in PRESET:
            x.loc[x["env_name"] == task, "value"] += raw_shift(task, shift)
        out[shift] = write(x, d / f"ours{shift:+.1f}.csv")
    return out


@pytest.fixture(scope="module")
def shifted(ours_csvs, ref_results) -> dict[float, compare.Comparison]:
    return {s: compare.compare(load_results([str(p)]), ref_results, frames=F, reps=2000, seed=0)
            for s, p in ours_csvs.items()}


# -- the published file against part of itself ----------------------------------------------

def test_published_seeds_against_all_of_them_are_consistent(shifted):
    c = shifted[0.0]
    v = c.verdicts.set_index("task")
    assert list(v.index) == PRESET                          # registry order
    assert (v["frame"] == F).all() and (v["ours_n"] == 3).all() and (v["ref_n"] == 10).all()
    assert (v["verdict"] == "consistent").all(), v[["diff", "ci_low", "ci_high"]]
    assert ((v["ci_low"] <= 0) & (v["ci_high"] >= 0)).all()
    assert c.aggregate["counts"] == {"consistent": 5, "better": 0, "worse": 0}
    mean, lo, hi = c.aggregate["mean"]
    assert lo <= 0 <= hi and mean == pytest.approx(v["diff"].mean(), abs=1e-12)
    assert "iqm" in c.aggregate                              # >= 4 tasks


def test_all_57_tasks_few_flags_by_chance(published_df, ref_results, tmp_path):
    """Every published task, 4 of 10 seeds as ours, at 1M frames: a faithful copy gets ~5% of
    tasks flagged by chance at most (fewer here: ours is a subset of the reference)."""
    seeds = sorted(published_df["seed"].unique())[::3]
    p = write(published_df.loc[published_df["seed"].isin(seeds), COLUMNS]
              .assign(exp_name="ours"), tmp_path / "ours.csv")
    c = compare.compare(load_results([str(p)]), ref_results, reps=1000, seed=0)
    v = c.verdicts
    assert len(v) == 57 and (v["frame"] == 1_000_000).all()
    assert (v["ours_n"] == len(seeds)).all() and (v["ref_n"] == 10).all()
    assert (v["verdict"] != "consistent").sum() <= 3, v.loc[v["verdict"] != "consistent"]
    _, lo, hi = c.aggregate["mean"]
    assert lo <= 0 <= hi


@pytest.mark.parametrize("shift,verdict", [(0.3, "better"), (-0.3, "worse")])
def test_shift_by_0_3_normalised_is_detected(shifted, shift, verdict):
    base, c = shifted[0.0].verdicts, shifted[shift].verdicts
    assert (c["verdict"] == verdict).all(), c[["task", "diff", "ci_low", "ci_high"]]
    # The check is translation-equivariant: same resamples, everything moves by the shift.
    for col in ("diff", "ci_low", "ci_high"):
        np.testing.assert_allclose(c[col], base[col] + shift, atol=1e-9, err_msg=col)
    for col in ("min_detectable_diff", "se", "df", "ours_sd", "ref_sd"):
        np.testing.assert_allclose(c[col], base[col], rtol=1e-9, err_msg=col)
    assert (c["min_detectable_diff"] < 0.3).all()            # what made it detectable
    agg = shifted[shift].aggregate
    assert agg["counts"][verdict] == len(PRESET)
    mean, lo, hi = agg["mean"]
    assert mean == pytest.approx(shifted[0.0].aggregate["mean"][0] + shift, abs=1e-9)
    assert (lo > 0) if shift > 0 else (hi < 0)


def test_differences_use_each_domains_normaliser_and_metric(shifted, published_df):
    """diff = mean over seeds of Task.normalise(raw) on the task's own metric, ours - ref:
    MuJoCo (TD3-normalised), DMC (/1000), MyoSuite (success rate, not the return)."""
    v = shifted[0.0].verdicts.set_index("task")
    at = published_df.loc[published_df["env_step"] == F]
    domains = set()
    for task in PRESET:
        t = suites.get_task(task)
        rows = at.loc[(at["env_name"] == task) & (at["metric"] == t.metric)]
        norm = t.normalise(rows["value"].to_numpy(float))
        mine = rows["seed"].isin(OURS_SEEDS).to_numpy()
        assert v.loc[task, "ours_mean"] == pytest.approx(norm[mine].mean(), rel=1e-9)
        assert v.loc[task, "ref_mean"] == pytest.approx(norm.mean(), rel=1e-9)
        assert v.loc[task, "ref_sd"] == pytest.approx(norm.std(ddof=1), rel=1e-9)
        assert v.loc[task, "domain"] == t.domain
        domains.add(t.domain)
    assert {"mujoco", "dmc-em", "myosuite"} <= domains


def test_cli_on_published_writes_the_four_outputs(capsys, ours_csvs, published, tmp_path):
    out = tmp_path / "cmp"
    code, stdout, err = cli(capsys, f"results={ours_csvs[0.0]}", f"reference={published}",
                            "frames=300k", f"out={out}", "reps=500")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(compare.OUT_FILES)
    assert "ours (results) vs simbaV2_utd2 (reference): 5 task(s) at 300,000 frames" in stdout
    assert "seeds per task: 3 vs 10" in stdout and "verdicts: 5 consistent" in stdout
    v = pd.read_csv(out / "verdicts.csv")
    assert list(v.columns) == compare.VERDICT_COLUMNS and v["task"].tolist() == PRESET
    per = pd.read_csv(out / "per_task.csv")
    assert list(per.columns) == compare.PER_TASK_COLUMNS
    assert per.groupby("task")["frame"].max().eq(F).all()
    # Hopper (MuJoCo) is evaluated every 50k frames on both sides, the others every 100k.
    assert per.loc[per["task"] == "Hopper-v4", "frame"].tolist() == list(range(0, F + 1, 50_000))
    assert per.loc[per["task"] == "dog-stand", "frame"].tolist() == list(range(0, F + 1, 100_000))

    report = (out / "report.md").read_text()
    assert "Seeds per task at the verdict frame: results 3, reference 10" in report
    assert "## What this check can and cannot detect" in report
    mdd = v["min_detectable_diff"]
    assert f"median {np.median(mdd):.3f}, from {mdd.min():.3f} to {mdd.max():.3f}" in report
    assert "not evidence of equality" in report
    for task in PRESET:
        assert re.search(rf"^\| {re.escape(task)} \| [^|]+ \| 300,000 \| 3/10 \|", report, re.M)
    assert "![curves](curves.png)" in report

    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    import matplotlib.image
    img = matplotlib.image.imread(out / "curves.png")
    assert img.shape[0] > 300 and img.shape[1] > 300 and img[..., :3].std() > 0.05


# -- the statistics on known distributions --------------------------------------------------

@pytest.mark.parametrize("n_ours,n_ref,seed", [(3, 10, 1), (5, 5, 2)])
def test_interval_covers_the_true_difference(tmp_path, n_ours, n_ref, seed):
    """400 tasks, true difference 0.5: the 95% interval covers it 91-98.5% of the time. (A
    plain percentile bootstrap, without the sqrt(n/(n-1)) and t/z corrections, covers ~85%.)"""
    v = synthetic(tmp_path, n_ours, n_ref, 0.5, 400, seed).verdicts
    covered = ((v["ci_low"] <= 0.5) & (v["ci_high"] >= 0.5)).mean()
    assert 0.91 <= covered <= 0.985, covered
    assert (v["ci_low"] <= v["diff"]).all() and (v["diff"] <= v["ci_high"]).all()


def test_a_difference_of_one_mdd_is_found_about_80_percent_of_the_time(tmp_path):
    mdd = theoretical_mdd(5, 10)
    v = synthetic(tmp_path, 5, 10, mdd, 400, 3).verdicts
    power = (v["verdict"] == "better").mean()
    assert 0.65 <= power <= 0.92, power
    assert (v["verdict"] == "worse").sum() == 0
    half = synthetic(tmp_path, 5, 10, mdd / 2, 400, 4).verdicts
    assert (half["verdict"] == "better").mean() < 0.5


def test_minimum_detectable_difference_shrinks_with_more_seeds(tmp_path):
    medians = [synthetic(tmp_path, n, 10, 0.0, 200, 5, reps=200).verdicts[
        "min_detectable_diff"].median() for n in (2, 3, 5, 10)]
    assert all(a > b for a, b in zip(medians, medians[1:])), medians
    assert medians[0] > 2 * medians[-1]          # 2 seeds: our spread is barely estimated


def test_welch_se_df_and_mdd_follow_their_formulas(tmp_path):
    # DMC: normalised = raw / 1000.
    o = [100.0, 300.0, 500.0]
    r = [200.0, 250.0, 300.0, 350.0, 400.0, 450.0]
    ours = load_results([str(write(long_df("ours", [("walker-run", s, 1000, x)
                                                   for s, x in enumerate(o)]),
                                   tmp_path / "o.csv"))])
    ref = load_results([str(write(long_df("ref", [("walker-run", s, 1000, x)
                                                 for s, x in enumerate(r)]),
                                  tmp_path / "r.csv"))])
    v = compare.compare(ours, ref, reps=4000, seed=0).verdicts.iloc[0]
    xo, xr = np.array(o) / 1000, np.array(r) / 1000
    a, b = xo.var(ddof=1) / 3, xr.var(ddof=1) / 6
    df = (a + b) ** 2 / (a ** 2 / 2 + b ** 2 / 5)
    se = np.sqrt(a + b)
    assert v["diff"] == pytest.approx(xo.mean() - xr.mean(), abs=1e-12)
    assert (v["ours_sd"], v["ref_sd"]) == pytest.approx((xo.std(ddof=1), xr.std(ddof=1)))
    assert v["se"] == pytest.approx(se) and v["df"] == pytest.approx(df)
    assert v["min_detectable_diff"] == pytest.approx(
        (stats.t.ppf(0.975, df) + stats.t.ppf(0.80, df)) * se)
    # The interval is about as wide as the Welch t interval (bootstrap, so not exactly).
    half = stats.t.ppf(0.975, df) * se
    assert v["ci_high"] - v["ci_low"] == pytest.approx(2 * half, rel=0.25)


def test_one_seed_borrows_the_other_sides_spread(tmp_path):
    """One run of ours: is it within the reference's seed-to-seed variation (df = n_ref - 1)?
    One run on each side: nothing can be tested; reported as such."""
    rng = np.random.default_rng(0)
    ref_vals = rng.normal(500, 20, 10)          # DMC raw; sd 0.02 normalised
    m = ref_vals.mean()
    rows_r = [(t, s, 1000, x) for t in ("walker-run", "cheetah-run", "finger-spin")
              for s, x in enumerate(ref_vals)] + [("hopper-stand", 0, 1000, 400.0)]
    rows_o = [("walker-run", 0, 1000, m), ("cheetah-run", 0, 1000, m + 200),
              ("finger-spin", 0, 1000, m - 200), ("hopper-stand", 0, 1000, 500.0)]
    ours = load_results([str(write(long_df("ours", rows_o), tmp_path / "o.csv"))])
    ref = load_results([str(write(long_df("ref", rows_r), tmp_path / "r.csv"))])
    c = compare.compare(ours, ref, reps=2000, seed=0)
    v = c.verdicts.set_index("task")
    assert v.loc["walker-run", "verdict"] == "consistent"
    assert v.loc["cheetah-run", "verdict"] == "better"
    assert v.loc["finger-spin", "verdict"] == "worse"
    for t in ("walker-run", "cheetah-run", "finger-spin"):
        assert v.loc[t, "df"] == pytest.approx(9)                  # n_ref - 1
        assert "spread is the reference's" in v.loc[t, "note"]
    u = v.loc["hopper-stand"]
    assert u["verdict"] == "consistent" and np.isnan(u["ci_low"]) and np.isnan(u["ci_high"])
    assert "nothing detectable" in u["note"] and c.aggregate["n_untestable"] == 1
    opts = compare.Options(["x"], ["y"], None, None, None, None, tmp_path, 2000, 0)
    text = compare.report_md(c, opts, "cmd", {"results": ["x"], "reference": ["y"]})
    assert "4 task(s) have a single seed in results" in text
    assert "1 task(s) have one seed on each side" in text


def test_bootstrap_variance_of_a_mean_is_s2_over_n():
    """The resampled means are rescaled so that their variance is s^2/n, not the plain
    bootstrap's (n-1)/n * s^2/n (a third too small with 3 seeds)."""
    rng = np.random.default_rng(0)
    rows = [("a", s, f, x) for f in (0, 1) for s, x in enumerate(rng.normal(0, 1, 3))]
    rows += [("b", s, f, x) for f in (0, 1) for s, x in enumerate(rng.normal(0, 1, 10))]
    df = pd.DataFrame(rows, columns=["task", "seed", "frame", "norm"])
    rs = compare.runs_matrix(df, ["a", "b"], [0, 1])
    st = compare.side_stats(rs, 40_000, np.random.default_rng(1))
    assert st.n.tolist() == [[3, 3], [10, 10]]
    want = st.var / st.n
    np.testing.assert_allclose(st.boot.var(axis=0), want, rtol=0.04)
    np.testing.assert_allclose(st.boot.mean(axis=0), st.mean, atol=0.01)


def test_same_seed_same_numbers_other_seed_other_resamples(tmp_path):
    a = synthetic(tmp_path, 3, 10, 0.0, 20, 7).verdicts
    b = synthetic(tmp_path, 3, 10, 0.0, 20, 7).verdicts
    pd.testing.assert_frame_equal(a, b)
    c = compare.compare(load_results([str(tmp_path / "o3-7.csv")]),
                        load_results([str(tmp_path / "r10-7.csv")]), reps=2000, seed=1).verdicts
    np.testing.assert_array_equal(a["diff"], c["diff"])
    assert not np.allclose(a["ci_low"], c["ci_low"])


# -- frames ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grids(tmp_path_factory) -> tuple[Path, Path]:
    """Three DMC tasks, 4 seeds a side, deliberately mismatched evaluation grids:
    cartpole-swingup: ours 0, 99,800, 150k, 200k, 300k, 350k; reference 0, 99,900, 100k, 200k,
                      250k, 300k, 400k (compared: 0, 100k, 200k, 300k);
    walker-run:       ours stops at 200k, the reference goes on to 300k;
    cheetah-run:      ours only at 50k: no frame in common."""
    d = tmp_path_factory.mktemp("grids")
    grid = {"ours": {"cartpole-swingup": [0, 99_800, 150_000, 200_000, 300_000, 350_000],
                     "walker-run": [0, 100_000, 200_000], "cheetah-run": [50_000]},
            "ref": {"cartpole-swingup": [0, 99_900, 100_000, 200_000, 250_000, 300_000,
                                         400_000],
                    "walker-run": [0, 100_000, 200_000, 300_000],
                    "cheetah-run": [0, 100_000]}}
    paths = []
    for i, (method, tasks) in enumerate(grid.items()):
        rows = [(t, s, f, 100 + f / 1000 + 10 * s + i) for t, fs in tasks.items()
                for s in range(4) for f in fs]
        paths.append(write(long_df(method, rows), d / f"{method}.csv"))
    return paths[0], paths[1]


def test_only_frames_both_sides_evaluated_are_compared(grids):
    ours, ref = (load_results([str(p)]) for p in grids)
    c = compare.compare(ours, ref, reps=200, seed=0)
    assert c.tasks == ["cartpole-swingup", "walker-run"]
    # 99,800 counts for 100k (0.5% tolerance); 99,900 would reuse it and is dropped;
    # 150k, 250k, 350k and 400k are on one side only.
    assert c.common == {"cartpole-swingup": [0, 100_000, 200_000, 300_000],
                        "walker-run": [0, 100_000, 200_000]}
    per = c.per_task
    assert set(per["frame"]) == {0, 100_000, 200_000, 300_000}
    v = c.verdicts.set_index("task")
    assert v.loc["cartpole-swingup", "frame"] == 300_000 and c.limit == 300_000
    assert v.loc["cartpole-swingup", "frames_compared"] == 4
    assert v.loc["walker-run", "frame"] == 200_000
    assert "last common frame 200,000 < 300,000" in v.loc["walker-run", "note"]
    assert any("not compared, no common evaluation frame: cheetah-run" in n for n in c.notes)
    assert any("tasks end at different common frames" in n for n in c.notes)
    # The value read for 100k is our evaluation at 99,800.
    got = per.set_index(["task", "frame"]).loc[("cartpole-swingup", 100_000), "ours_mean"]
    assert got == pytest.approx((100 + 99.8 + 15) / 1000)


def test_frames_option_moves_the_verdict_frame(grids, capsys, tmp_path):
    ours, ref = (load_results([str(p)]) for p in grids)
    c = compare.compare(ours, ref, frames=200_000, reps=200, seed=0)
    assert set(c.verdicts["frame"]) == {200_000} and c.per_task["frame"].max() == 200_000
    c = compare.compare(ours, ref, frames=150_000, reps=200, seed=0)
    v = c.verdicts.set_index("task")
    assert (v["frame"] == 100_000).all() and c.limit == 150_000
    assert all("last common frame 100,000 < 150,000" in n for n in v["note"])
    # The skipped task and the reasons reach the user on the command line too.
    code, out, err = cli(capsys, f"results={grids[0]}", f"reference={grids[1]}",
                         "frames=150k", f"out={tmp_path / 'o'}", "reps=100")
    assert code == 0, err
    assert "note: not compared, no common evaluation frame: cheetah-run" in err
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Frames compared up to 150,000 (frames=)" in report
    assert "not compared, no common evaluation frame: cheetah-run" in report


# -- bad input -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    rows = [(t, s, f, 100.0 * (s + 1) + f / 1000) for t in ("walker-run", "cheetah-run")
            for s in range(3) for f in (0, 100_000)]
    p = {"ours": write(long_df("ours", rows), d / "ours.csv"),
         "other": write(long_df("other", rows), d / "other.csv"),
         "ref": write(long_df("ref", rows), d / "ref.csv"),
         "ref_elsewhere": write(long_df("ref", [("finger-spin", s, 0, 1.0 + s)
                                                  for s in range(3)]), d / "elsewhere.csv"),
         "late": write(long_df("late", [("walker-run", s, 50_000, 1.0 + s) for s in range(3)]),
                       d / "late.csv"),
         "not_long": d / "wide.csv", "file": d / "a_file"}
    p["not_long"].write_text("task,seed,score\nwalker-run,0,1\n")
    p["file"].write_text("x")
    return p


BAD = {  # name -> (arguments with {placeholders}, what the message must contain)
    "missing results file": (["results={d}/nope.csv", "reference={ref}"],
                             ["results path", "nope.csv", "does not exist"]),
    "missing reference file": (["results={ours}", "reference={d}/nope.csv"],
                               ["reference:", "nope.csv", "does not exist"]),
    "no results key": (["reference={ref}"], ["results= is required", "valid keys:"]),
    "unknown key": (["results={ours}", "reference={ref}", "frame=1M"],
                    ["unknown key 'frame'", "did you mean frames", "valid keys:",
                     "reference_method"]),
    "not key=value": (["results={ours}", "reference={ref}", "300k"], ["expected key=value"]),
    "unknown method": (["results={ours}", "reference={ref}", "method=simba"],
                       ["bad value 'simba' for method", "valid: ours"]),
    "unknown reference method": (["results={ours}", "reference={ref}",
                                  "reference_method=simbaV2_utd8"],
                                 ["for reference_method", "valid: ref"]),
    "several methods": (["results={ours},{other}", "reference={ref}"],
                        ["several methods (ours, other)", "method="]),
    "no common task": (["results={ours}", "reference={ref_elsewhere}"],
                       ["share no task", "results has cheetah-run, walker-run",
                        "reference has finger-spin"]),
    "unknown task": (["results={ours}", "reference={ref}", "tasks=walker-runn"],
                     ["tasks=", "walker-runn", "closest: walker-run", "suites:", "fidelity",
                      "tasks on both sides: cheetah-run, walker-run"]),
    "suite with no task on both sides": (["results={ours}", "reference={ref}", "tasks=mujoco"],
                                         ["no task of tasks=mujoco has runs on both sides",
                                          "tasks on both sides: cheetah-run, walker-run"]),
    "bad frames": (["results={ours}", "reference={ref}", "frames=300kk"],
                   ["bad value '300kk' for frames", "1M, 500k"]),
    "negative frames": (["results={ours}", "reference={ref}", "frames=-1"],
                        ["for frames", ">= 0"]),
    "no common frame": (["results={late}", "reference={ref}"],
                        ["share no evaluation frame", "results evaluated at 50,000",
                         "reference at 0, 100,000"]),
    "no common frame below frames=": (["results={ours}", "reference={late}", "frames=40k"],
                                      ["share no evaluation frame at or below frames=40,000"]),
    "bad reps": (["results={ours}", "reference={ref}", "reps=0"],
                 ["bad value '0' for reps", "integer >= 1"]),
    "not long format": (["results={not_long}", "reference={ref}"],
                        ["not in the long format", "missing column(s)", "exp_name"]),
    "out is a file": (["results={ours}", "reference={ref}", "out={file}"],
                      ["for out", "is an existing file"]),
}


@pytest.fixture(scope="module")
def good_out(inputs, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """An out folder written by a good run, and its bytes."""
    out = tmp_path_factory.mktemp("good") / "cmp"
    assert compare.main([f"results={inputs['ours']}", f"reference={inputs['ref']}",
                         f"out={out}", "reps=100"]) == 0
    return out, {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_exits_2_naming_the_problem_and_leaves_out_alone(name, inputs, good_out,
                                                                   capsys):
    args, want = BAD[name]
    out, before = good_out
    fill = {k: str(v) for k, v in inputs.items()} | {"d": str(inputs["ours"].parent)}
    argv = [a.format(**fill) for a in args]
    if not any(a.startswith("out=") for a in argv):
        argv.append(f"out={out}")
    code, stdout, err = cli(capsys, *argv)
    assert code == 2, (stdout, err)
    assert err.startswith("error: ") and stdout == ""
    for w in want:
        assert w in err, (w, err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_failure_after_loading_leaves_out_alone(inputs, good_out, monkeypatch):
    """Everything is computed (the figure included) before the first file is written."""
    out, before = good_out

    def boom(_cmp):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(compare, "curves_png", boom)
    opts = compare.parse_args([f"results={inputs['ours']}", f"reference={inputs['ref']}",
                               f"out={out}", "reps=50", "seed=3"])
    with pytest.raises(RuntimeError, match="drawing failed"):
        compare.run(opts)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_input_creates_no_out_folder(inputs, tmp_path, capsys):
    out = tmp_path / "new" / "cmp"
    code, _, err = cli(capsys, f"results={inputs['ours']}", f"reference={inputs['ref']}",
                       "method=nope", f"out={out}")
    assert code == 2 and "valid: ours" in err
    assert not out.exists() and not (tmp_path / "new").exists()


def test_the_module_exits_2_from_the_shell(inputs, tmp_path):
    p = subprocess.run([sys.executable, "-m", "analysis.compare", f"results={inputs['ours']}",
                        f"reference={inputs['ref']}", "frames=lots", f"out={tmp_path / 'o'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().startswith("error: bad value 'lots' for frames")
    assert not (tmp_path / "o").exists()


def test_fewer_than_four_tasks_have_no_iqm_and_two_seeds_are_flagged(inputs, capsys,
                                                                     tmp_path):
    rows = [("walker-run", s, 0, 100.0 + 10 * s) for s in range(2)]
    p = write(long_df("two", rows), tmp_path / "two.csv")
    code, out, err = cli(capsys, f"results={p}", f"reference={inputs['ref']}",
                         f"out={tmp_path / 'o'}", "reps=200")
    assert code == 0, err
    assert "IQM" not in out and "mean difference" in out
    v = pd.read_csv(tmp_path / "o" / "verdicts.csv")
    assert v["task"].tolist() == ["walker-run"] and v["ours_n"].tolist() == [2]
    assert "2 seeds in results" in v["note"].iloc[0]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "1 task(s) have 2 seeds in results" in report
    assert "Seeds per task at the verdict frame: results 2, reference 3" in report


# -- the documentation -----------------------------------------------------------------------

def test_the_docs_show_the_real_keys_and_commands():
    """docs/reproduction-check.md's key table is analysis.compare's key list; every compare
    command it and the README show uses real keys; the launch + compare pair is the one
    analysis.fidelity prints (the same that docs/fidelity.md shows)."""
    import shlex

    from analysis import fidelity

    doc = (REPO / "docs" / "reproduction-check.md").read_text()
    readme = (REPO / "README.md").read_text()
    table = re.findall(r"^\| `(\w+)=` \|", doc, re.M)
    assert sorted(table) == sorted(compare.KEYS)
    launch, cmp_line = fidelity.commands(PRESET, fidelity.FRAMES, fidelity.SEEDS,
                                         fidelity.WORKERS, "REF")
    ref = "~/.cache/simbabench/simbav2-results/simbaV2_utd2.csv"
    for text in (doc, readme):
        assert launch in text and cmp_line.replace("REF", ref) in text
        lines = [ln for block in re.findall(r"```sh\n(.*?)```", text, re.S)
                 for ln in block.splitlines()
                 if "python -m analysis.compare" in ln and "<" not in ln]   # not synopses
        assert lines
        for ln in lines:
            args = [a for a in shlex.split(ln.split("#")[0])[3:] if "=" in a]
            assert {a.split("=")[0] for a in args} <= set(compare.KEYS), ln
    assert "docs/reproduction-check.md" in readme and "docs/fidelity.md" in readme
    assert "(fidelity.md)" in doc
