"""Round trip: what the harness really writes is what the analysis reads, field by field.

Three short real runs (`python -m harness.run`, in parallel) cover the three code paths that
differ in the store: DMC (one critic, action repeat 2, return/1000), MuJoCo (clipped double-Q,
repeat 1, TD3-normalised, given a non-canonical spelling) and MyoSuite (two metrics in eval.csv,
analysis keeps avg_success). Each is then read back through analysis.load / analysis.store /
analysis.scores and compared with the run's own files; analysis.make_figures must run on the
store. A change in what the runner writes (names, units, files) breaks one of these tests.
tests/test_adding_a_baseline.py covers the multi-agent launch; this file covers field values.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import store
from analysis.load import load_results
from analysis.scores import score_at

REPO = Path(__file__).resolve().parents[1]
EXP = "roundtrip"
FRAMES = 1000
# Cheap but complete: compile-dominated (~10 s per run on one core), several evaluations,
# log rows and norm/ELR metric rows. updates_per_frame=0.25 also makes the UTD fact non-default.
TINY = [f"frames={FRAMES}", "warmup_steps=100", "eval_every=500", "eval_episodes=2",
        "actor.width=16", "critic.width=16", "critic.depth=1", "batch_size=32",
        "updates_per_frame=0.25", "log_every=250", "metrics_every=500", "progress=none",
        f"exp={EXP}"]
# (spelling given to the runner, canonical task, domain, seed)
RUNS = [("cartpole_balance", "cartpole-balance", "dmc-em", 0),
        ("hopper_v4", "Hopper-v4", "mujoco", 1),
        ("myo-reach", "myo-reach", "myosuite", 2)]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("roundtrip")
    env = {**os.environ, "MUJOCO_GL": "disable", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-m", "harness.run", f"task={given}",
                               f"seed={seed}", f"root={root}", *TINY], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for given, _, _, seed in RUNS]
    for p, run in zip(procs, RUNS):
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{run}: exit {p.returncode}\n{out[-3000:]}"
    return root


@pytest.fixture(scope="module")
def results(root):
    return load_results([str(root)])


def _dir(root: Path, task: str, seed: int) -> Path:
    return root / EXP / task / f"seed_{seed}"


def _files(root: Path, task: str, seed: int) -> tuple[dict, dict, pd.DataFrame]:
    d = _dir(root, task, seed)
    return (json.loads((d / "config.json").read_text()),
            json.loads((d / "status.json").read_text()), pd.read_csv(d / "eval.csv"))


def _docs_constants(task: str) -> tuple[float, float]:
    """(R_random, R_reference) of a MuJoCo/HumanoidBench task from docs/tasks.md's tables."""
    text = (REPO / "docs" / "tasks.md").read_text()
    m = re.search(rf"^\| {re.escape(task)} \| (-?[\d.]+) \| (-?[\d.]+)", text, re.MULTILINE)
    assert m, f"{task} not in docs/tasks.md's constant tables"
    return float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("given,task,domain,seed", RUNS)
def test_evals_equal_the_runs_own_eval_csv(root, results, given, task, domain, seed):
    config, _, ev = _files(root, task, seed)
    assert config["task"] == task  # the runner canonicalised the spelling it was given
    mine = results.evals.loc[(results.evals["task"] == task)].sort_values("env_step")
    metric = "avg_success" if domain == "myosuite" else "avg_return"
    want = ev.loc[ev["metric"] == metric].sort_values("env_step")
    assert set(mine["method"]) == {EXP}  # method label = exp
    assert set(mine["domain"]) == {domain}
    assert set(mine["metric"]) == {metric}  # MyoSuite: avg_success kept, avg_return dropped
    assert (mine["seed"] == seed).all() and (want["seed"] == seed).all()
    assert mine["env_step"].tolist() == want["env_step"].tolist() == [0, 500, 1000]
    np.testing.assert_array_equal(mine["value"].to_numpy(), want["value"].to_numpy())
    assert set(mine["source"]) == {str(root)}


@pytest.mark.parametrize("given,task,domain,seed", RUNS)
def test_scores_use_the_documented_normaliser(root, results, given, task, domain, seed):
    _, _, ev = _files(root, task, seed)
    sc = score_at(results, FRAMES).scores.set_index("task").loc[task]
    metric = "avg_success" if domain == "myosuite" else "avg_return"
    raw = float(ev.loc[(ev["metric"] == metric) & (ev["env_step"] == FRAMES), "value"].iloc[0])
    assert sc["raw"] == raw and sc["score_step"] == FRAMES
    if domain == "mujoco":
        low, high = _docs_constants(task)
        assert (low, high) == (18.791, 3226.0)  # Hopper-v4 row of docs/tasks.md
        want = (raw - low) / (high - low)
    elif domain in ("dmc-em", "dmc-hard"):
        want = raw / 1000
    else:  # MyoSuite: the success rate itself
        want = raw
    assert sc["norm"] == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("given,task,domain,seed", RUNS)
def test_every_run_fact_analysis_reads_matches_the_files(root, results, given, task, domain,
                                                         seed):
    config, status, ev = _files(root, task, seed)
    d = _dir(root, task, seed)
    scale = config["scale"]
    # The runner's own record of what was asked for (scale facts come from the agent).
    assert scale["width"] == 16 and scale["depth"] == 1 and scale["updates_per_frame"] == 0.25
    assert scale["critic_heads"] == (2 if domain == "mujoco" else 1)  # CDQ on MuJoCo only
    assert status["state"] == "completed" and status["frames_done"] == FRAMES
    assert status["wall_time_s"] > 0 and status["device"] == "cpu"
    expected = {
        "exp_name": EXP, "env_name": task, "seed": seed, "run_dir": str(d),
        "run_id": config["run_id"], "agent": config["agent"]["label"],
        "width": scale["width"], "depth": scale["depth"], "params": scale["params"]["total"],
        "flops_per_update": scale["flops_per_update"],
        "utd": 2 * scale["updates_per_frame"], "budget_frames": config["frames"],
        "state": status["state"], "reason": status["reason"],
        "frames_done": status["frames_done"], "wall_time_s": status["wall_time_s"],
        "device": status["device"], "has_metrics": True}
    meta = store.read_run(d, lambda p: pd.read_csv(p)).meta()
    # A field analysis starts to read must be added here (and checked against the files).
    assert set(meta) == set(expected)
    for k, v in expected.items():
        assert meta[k] == v, (k, meta[k], v)
    assert meta["agent"] == "simbav2" and meta["utd"] == 0.5

    row = results.runs.set_index(["method", "task", "seed"]).loc[(EXP, task, seed)]
    assert row["kind"] == "store" and row["domain"] == domain
    assert row["last_frames"] == ev["env_step"].max() == FRAMES
    for k, v in expected.items():
        if k not in ("exp_name", "env_name", "seed"):  # become method / task / seed
            assert row[k] == v, (k, row[k], v)

    sc = score_at(results, FRAMES).scores.set_index("task").loc[task]
    for k in ("state", "agent", "width", "depth", "utd", "wall_time_s", "device", "run_dir",
              "has_metrics"):
        assert sc[k] == expected[k], k


@pytest.mark.parametrize("given,task,domain,seed", RUNS)
def test_read_dynamics_finds_the_logged_norm_metrics(root, given, task, domain, seed):
    d = _dir(root, task, seed)
    logged = pd.read_parquet(d / "metrics.parquet")
    dyn = store.read_dynamics(d)
    assert dyn is not None
    cols = set(store.DYNAMICS_COLUMNS.values())
    # SimbaV2 logs every norm / effective-LR quantity, under the names analysis expects.
    assert cols <= set(logged.columns) and set(dyn.columns) == cols | {store.FRAMES_COLUMN}
    assert dyn[store.FRAMES_COLUMN].tolist() == sorted(logged["frames"].tolist())
    for col in cols:
        want = logged.sort_values("frames")[col].to_numpy()
        np.testing.assert_array_equal(dyn[col].to_numpy(), want)
        # computed every metrics_every=500 frames: at 500 and 1000
        assert logged.loc[logged[col].notna(), "frames"].tolist() == [500, 1000], col


def test_make_figures_reads_the_store_and_names_the_runs(root, tmp_path):
    out = tmp_path / "fig"
    p = subprocess.run([sys.executable, "-m", "analysis.make_figures", f"results={root}",
                        f"out={out}", f"frames={FRAMES}", "reps=200"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    report = (out / "report.md").read_text()
    # Inputs row: method = exp, source = the store root's folder, 3 tasks, 3 complete runs.
    assert re.search(rf"^\| {EXP} \| {root.name} \| 3 \| 3 \| 0 \| 0 \|$", report, re.M), report
    for _, task, domain, _ in RUNS:
        assert f"| {domain} | {task} |" in report
        # the dynamics figures need read_dynamics; the compute figure needs wall time + device
        assert f"dynamics_{domain}.png" in report
    assert "scaling_compute.png" in report
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["task"]) == sorted(t for _, t, _, _ in RUNS)
    for _, task, _, seed in RUNS:
        _, status, _ = _files(root, task, seed)
        r = scores.set_index("task").loc[task]
        assert r["method"] == EXP and r["device"] == status["device"]
        assert r["wall_time_s"] == pytest.approx(status["wall_time_s"], rel=1e-6)
