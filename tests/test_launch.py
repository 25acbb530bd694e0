"""The launcher: validation, sweeps, the local backend, concurrent launches, failures, and
SLURM job arrays with preemption on the real one-node cluster (`bash slurm/cluster.sh up`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

TINY = ["frames=1000", "warmup_steps=150", "actor.width=16", "critic.width=32",
        "critic.depth=1", "batch_size=32", "eval_episodes=2", "eval_every=500"]


def launch(*args, check=True, timeout=600):
    p = subprocess.run([sys.executable, "-m", "harness.launch", *args], capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def status(root, exp) -> list[dict]:
    p = subprocess.run([sys.executable, "-m", "harness.status", f"exp={exp}", f"root={root}",
                        "format=json"], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


@pytest.mark.parametrize("args,needle", [
    (["critic.widht=64"], "critic.width"),
    (["critic.width=64,abc"], "expected int"),
    (["task=cartpole-balanse"], "cartpole-balance"),
    (["suite=dmc-hardd"], "dmc-hard"),
    (["agent=simbav2,sac9"], "valid: simbav2"),
    (["backend=kubernetes"], "local, slurm"),
    (["backend=slurm", "partition=nope"], "valid on this cluster profile: cpu, gpu"),
    (["backend=slurm", "profile=mars"], "unknown cluster profile"),
    (["seeds=9-3"], "seeds"),
    (["backend=slurm", "max_array_size=0"], "bad value 0 for max_array_size: must be >= 1"),
    (["seed=3"], "seeds="),
    (["only=some"], "all, failed, unfinished"),
    (["dry_run=maybe"], "true or false"),
])
def test_bad_plans_are_rejected_before_anything_is_written(tmp_path, args, needle):
    root = tmp_path / "runs"
    base = [] if any(a.startswith(("task=", "suite=")) for a in args) else [
        "task=cartpole-balance"]
    p = launch(f"root={root}", *base, *args, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert needle in p.stderr
    assert not root.exists()


def test_dry_run_expands_the_cartesian_product_and_writes_nothing(tmp_path):
    root = tmp_path / "runs"
    p = launch(f"root={root}", "exp=sw", "task=cartpole-balance,cup-catch", "seeds=0-1",
               "critic.width=16,32", "utd=1,2", "dry_run=true")
    listed = [ln for ln in p.stdout.splitlines() if ln.startswith("* new")]
    assert len(listed) == 2 * 2 * 2 * 2
    assert any("sw/critic.width=32,utd=2/ball_in_cup-catch/seed_1" in ln for ln in listed)
    total = [ln for ln in p.stdout.splitlines() if ln.startswith("total")][0].split()
    assert total[1] == "16"
    assert not root.exists()


def test_local_backend_runs_the_plan_and_relaunching_skips_it(tmp_path):
    args = [f"root={tmp_path}", "exp=loc", "task=cartpole-balance,Hopper-v4", "seeds=2",
            "workers=2", *TINY]
    launch(*args)
    runs = status(tmp_path, "loc")
    assert len(runs) == 4 and {r["state"] for r in runs} == {"completed"}
    for r in runs:
        ev = pd.read_csv(Path(r["path"]) / "eval.csv")
        assert ev["env_step"].max() == 1000
    t = time.time()
    p = launch(*args)
    assert "nothing to run" in p.stdout and time.time() - t < 30
    text = subprocess.run([sys.executable, "-m", "harness.status", "exp=loc",
                           f"root={tmp_path}"], capture_output=True, text=True).stdout
    assert "all" in text and " 4 " in text


def test_two_launches_at_once_never_run_a_run_twice(tmp_path):
    args = [sys.executable, "-m", "harness.launch", f"root={tmp_path}", "exp=twice",
            "task=cartpole-balance", "seeds=3", "workers=2", *TINY]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        p.communicate(timeout=600)
    runs = status(tmp_path, "twice")
    assert len(runs) == 3 and {r["state"] for r in runs} == {"completed"}
    for r in runs:
        st = json.loads((Path(r["path"]) / "status.json").read_text())
        assert st["attempts"] == 1, r["path"]
        ev = pd.read_csv(Path(r["path"]) / "eval.csv")
        assert not ev.duplicated(["metric", "env_step"]).any()


def test_a_failing_run_shows_its_reason_and_only_failed_selects_it(tmp_path):
    args = [f"root={tmp_path}", "exp=fail", "task=cartpole-balance", "seeds=1", "workers=2",
            "lr_init=1e-4,1e38", *TINY]
    p = launch(*args, check=False)
    assert p.returncode == 1 and "non-finite" in p.stdout
    text = subprocess.run([sys.executable, "-m", "harness.status", "exp=fail",
                           f"root={tmp_path}"], capture_output=True, text=True).stdout
    assert "failed runs:" in text and "non-finite" in text and "only=failed" in text
    p = launch(*args, "only=failed", "dry_run=true")
    selected = [ln for ln in p.stdout.splitlines() if ln.startswith("*")]
    assert len(selected) == 1 and "lr_init=1e38" in selected[0] and "failed" in selected[0]


# -- the real SLURM cluster ---------------------------------------------------------------------

def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return p.returncode == 0 and "UP" in p.stdout


slurm = pytest.mark.skipif(not _cluster_up(), reason="no SLURM cluster is up "
                           "(bash slurm/cluster.sh up)")


def _wait(root, exp, n, timeout=300) -> list[dict]:
    end = time.time() + timeout
    while time.time() < end:
        runs = status(root, exp)
        if len(runs) == n and all(r["state"] in ("completed", "failed") for r in runs):
            return runs
        time.sleep(1)
    raise AssertionError(f"runs did not finish: {status(root, exp)}")


@pytest.mark.slurm
@slurm
def test_slurm_job_array_lands_every_result_and_relaunch_skips(tmp_path):
    args = [f"root={tmp_path}", "exp=arr", "task=cartpole-balance,Hopper-v4", "seeds=2",
            "backend=slurm", "partition=cpu", "array_parallelism=4", "runs_per_job=2", *TINY]
    t = time.time()
    p = launch(*args)
    assert time.time() - t < 30  # submits and returns
    assert "SLURM array(s)" in p.stdout and "2 task(s), 2 run(s) each" in p.stdout
    runs = _wait(tmp_path, "arr", 4)
    assert {r["state"] for r in runs} == {"completed"}
    jobs = {json.loads((Path(r["path"]) / "job.json").read_text())["job_id"] for r in runs}
    assert len(jobs) == 2
    for r in runs:
        st = json.loads((Path(r["path"]) / "status.json").read_text())
        assert st["job_id"] in jobs
        assert pd.read_csv(Path(r["path"]) / "eval.csv")["env_step"].max() == 1000
    assert "nothing to run" in launch(*args).stdout


PREEMPT = ["task=cartpole-balance", "frames=3000", "warmup_steps=250", "actor.width=16",
           "critic.width=32", "critic.depth=1", "batch_size=32", "eval_every=1000",
           "eval_episodes=2", "checkpoint_every=400"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    subprocess.run([sys.executable, "-m", "harness.run", *PREEMPT, f"root={root}", "exp=ref"],
                   check=True, capture_output=True, timeout=600)
    return pd.read_csv(root / "ref" / "cartpole-balance" / "seed_0" / "eval.csv")


@pytest.mark.slurm
@slurm
@pytest.mark.parametrize("how", ["usr2", "requeue"])
def test_a_preempted_job_resumes_from_its_checkpoint_exactly(tmp_path, uninterrupted, how):
    launch(f"root={tmp_path}", "exp=pre", "seeds=1", "backend=slurm", "partition=cpu", *PREEMPT)
    d = tmp_path / "pre" / "cartpole-balance" / "seed_0"
    end = time.time() + 300
    while not ((d / "eval.csv").exists() and len((d / "eval.csv").read_text().splitlines()) >= 3):
        assert time.time() < end, "the job did not start"
        time.sleep(0.3)
    job = json.loads((d / "job.json").read_text())["job_id"]
    cmd = (["scancel", "--signal=USR2", job] if how == "usr2" else ["scontrol", "requeue", job])
    subprocess.run(cmd, check=True)
    runs = _wait(tmp_path, "pre", 1)
    assert runs[0]["state"] == "completed"
    st = json.loads((d / "status.json").read_text())
    assert st["attempts"] == 2
    log = (d / "run.log").read_text()
    assert ("SIGUSR2" if how == "usr2" else "SIGTERM") in log and "resumed from ckpt_" in log
    ours = pd.read_csv(d / "eval.csv").drop(columns="exp_name")
    pd.testing.assert_frame_equal(ours, uninterrupted.drop(columns="exp_name"), check_exact=True)


@pytest.mark.slurm
@slurm
def test_a_requeued_job_of_packed_seeds_resumes_every_seed_exactly(tmp_path, uninterrupted):
    """Two seeds in one process on the real cluster: `scontrol requeue` stops both with a
    checkpoint at the same frame, and both finish with their uninterrupted results."""
    launch(f"root={tmp_path}", "exp=pk", "seeds=2", "seeds_per_process=2", "backend=slurm",
           "partition=cpu", *PREEMPT)
    base = tmp_path / "pk" / "cartpole-balance"
    d = base / "seed_0"
    end = time.time() + 300
    while not ((d / "eval.csv").exists() and len((d / "eval.csv").read_text().splitlines()) >= 3):
        assert time.time() < end, "the job did not start"
        time.sleep(0.3)
    job = json.loads((d / "job.json").read_text())["job_id"]
    assert json.loads((base / "seed_1" / "job.json").read_text())["job_id"] == job
    subprocess.run(["scontrol", "requeue", job], check=True)
    runs = _wait(tmp_path, "pk", 2)
    assert {r["state"] for r in runs} == {"completed"}
    for s in (0, 1):
        st = json.loads((base / f"seed_{s}" / "status.json").read_text())
        assert st["attempts"] == 2 and "resumed from ckpt_" in (
            base / f"seed_{s}" / "run.log").read_text()
    ours = pd.read_csv(d / "eval.csv").drop(columns="exp_name")
    pd.testing.assert_frame_equal(ours, uninterrupted.drop(columns="exp_name"), check_exact=True)


@pytest.mark.slurm
@slurm
def test_a_failing_slurm_run_is_reported_failed_with_its_reason(tmp_path):
    launch(f"root={tmp_path}", "exp=bad", "task=cartpole-balance", "seeds=1", "backend=slurm",
           "partition=cpu", "lr_init=1e38", "lr_end=1e38", *TINY)
    runs = _wait(tmp_path, "bad", 1)
    assert runs[0]["state"] == "failed" and "non-finite" in runs[0]["reason"]
    text = subprocess.run([sys.executable, "-m", "harness.status", "exp=bad",
                           f"root={tmp_path}"], capture_output=True, text=True).stdout
    assert "failed runs:" in text and "(job " in text


def test_local_workers_share_a_gpu_without_preallocation():
    """Several local workers: each JAX process must not reserve most of the GPU (the second
    would fail); a user's own setting wins; one worker keeps JAX's default."""
    from harness.launch import worker_env
    assert worker_env({"A": "1"}, 8) == {"A": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert worker_env({"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}, 8)[
        "XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in worker_env({}, 1)


def test_local_backend_packs_seeds_into_processes(tmp_path):
    args = [f"root={tmp_path}", "exp=pk", "task=cartpole-balance", "seeds=3",
            "seeds_per_process=2", "workers=1", *TINY]
    p = launch(*args)
    assert "2 seeds per process" in p.stdout
    runs = status(tmp_path, "pk")
    assert len(runs) == 3 and {r["state"] for r in runs} == {"completed"}
    base = tmp_path / "pk" / "cartpole-balance"
    # one process per (up to) two seeds: its log sits in its first run's directory
    assert [(base / f"seed_{s}" / "worker.log").exists() for s in range(3)] == [True, False, True]
    assert "nothing to run" in launch(*args).stdout


def test_packing_keeps_configs_apart_and_fills_jobs_with_whole_processes(tmp_path):
    from harness.plan import build_plan, process_args
    from harness.slurm_backend import job_chunks

    plan = build_plan({"root": str(tmp_path), "task": "cartpole-balance", "seeds": "0-2",
                       "critic.width": "16,32", "seeds_per_process": "2", "backend": "slurm",
                       "partition": "cpu", "runs_per_job": "5", "dry_run": "true"})
    procs = plan.processes()
    assert [[(r.point, r.run_cfg.seed) for r in g] for g in procs] == [
        [("critic.width=16", 0), ("critic.width=16", 1)], [("critic.width=16", 2)],
        [("critic.width=32", 0), ("critic.width=32", 1)], [("critic.width=32", 2)]]
    assert "seeds=0,1" in process_args(procs[0]) and not any(
        a.startswith("seed=") for a in process_args(procs[0]))
    assert "seed=2" in process_args(procs[1])
    # 5 runs per job -> 2 whole processes of 2 seeds
    assert plan.processes_per_job == 2
    assert [len(j) for j in job_chunks(plan)] == [2, 2]
    p = launch(f"root={tmp_path}", "task=cartpole-balance", "seeds=2", "seeds_per_process=0",
               check=False)
    assert p.returncode == 2 and "seeds_per_process" in p.stderr


def test_batching_and_envs_reach_the_k_seed_processes(tmp_path):
    from harness.cli import UsageError
    from harness.plan import build_plan, process_args

    given = {"root": str(tmp_path), "task": "cartpole-balance", "seeds": "0-2",
             "seeds_per_process": "2", "envs": "process", "batching": "map"}
    plan = build_plan(given)
    one, two = plan.processes()[0], plan.processes()[1]
    args = process_args(one, options=plan.process_options)
    assert "envs=process" in args and "batching=map" in args
    # a single-seed process runs an ordinary run: nothing to choose
    assert not any(a.startswith(("envs=", "batching=")) for a in process_args(
        two, options=plan.process_options))
    with pytest.raises(UsageError, match="auto, inline, process"):
        build_plan({**given, "envs": "threads"})
    with pytest.raises(UsageError, match="seeds_per_process=K"):
        build_plan({**given, "seeds_per_process": "1"})

