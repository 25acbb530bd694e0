"""Quiet, honest output: no known-harmless MuJoCo warnings, no MUJOCO_LOG.TXT in the working
directory, progress lines in run.log, the launcher's per-run progress and cost units, data
files that follow the umask, and an SPDX licence string in pyproject.toml."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness import checkpoint
from harness.progress import Progress
from harness.store import RunDir, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
HARMLESS = ("settotalmass", "empty prefix")


def test_pyproject_license_is_an_spdx_string():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


# -- file modes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o002, 0o022, 0o077])
def test_data_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        ckpt = checkpoint.save(tmp_path / "ck", 10, {"x": np.zeros(3)}, {"k": 1})
        store = RunDir(tmp_path, "e", "t", 0)
        store.set_status("running")
        store.log("hello")
        store.acquire()
        store.release()
    finally:
        os.umask(old)
    want = 0o666 & ~mask
    for f in (tmp_path / "a.json", ckpt / "meta.json", ckpt / "arrays" / "x.npy",
              store.status_path, store.log_path, store.path / ".lock"):
        assert stat.S_IMODE(f.stat().st_mode) == want, (f, oct(f.stat().st_mode))


# -- progress lines ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["lines", "none"])
def test_progress_lines_go_to_the_log_once_and_to_echo_only_in_lines_mode(mode):
    shown, logged = [], []
    p = Progress(mode, 100, shown.append, "t seed 0", log=logged.append)
    p.update(50, {"throughput/frames_per_s": 10.0, "updates": 3, "eval/avg_return": 1.5})
    p.update(100, {"throughput/frames_per_s": 10.0, "updates": 6})
    p.close()
    assert len(logged) == 2 and logged[0].startswith("[t seed 0] 50/100 frames (50%)")
    assert "avg_return=1.5" in logged[0]
    assert shown == (logged if mode == "lines" else [])


def _env(tmp_path):
    return {**os.environ, "MUJOCO_GL": "disable", "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "SIMBABENCH_JAX_CACHE": "off", "PYTHONPATH": str(REPO)}


def test_a_run_is_quiet_and_its_run_log_holds_the_progress_lines(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "harness.run", "task=cartpole-balance", "frames=600",
         "warmup_steps=200", "eval_every=300", "eval_episodes=1", "actor.width=16",
         "critic.width=32", "critic.depth=1", "batch_size=32", "log_every=300",
         f"root={tmp_path / 'runs'}", "exp=q", "progress=lines"],
        cwd=cwd, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    shown = p.stderr.strip().splitlines()
    assert len(shown) == 2 and all(s.startswith("[cartpole-balance seed 0]") for s in shown), \
        p.stderr
    log = (tmp_path / "runs" / "q" / "cartpole-balance" / "seed_0" / "run.log").read_text()
    logged = [line.split(" ", 1)[1] for line in log.splitlines()]
    assert [line for line in logged if line.startswith("[")] == shown
    assert not list(cwd.iterdir())


# -- MuJoCo's warnings and log file --------------------------------------------------------------

MUJOCO_SCRIPT = """
import sys
import mujoco, numpy as np
from suites import make_env
for task in sys.argv[1:]:
    env = make_env(task, 0)
    env.reset()
    env.step(env.action_space.sample())
m = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><body><joint/><geom size=".1"/></body></worldbody></mujoco>')
d = mujoco.MjData(m)
d.qpos[0] = np.nan
mujoco.mj_checkPos(m, d)  # a real warning: still reported
"""


@pytest.mark.parametrize("tasks", [["HalfCheetah-v4"], ["cheetah-run", "myo-reach"]],
                         ids=["mujoco-handler", "dm_control-absl-handler"])
def test_harmless_mujoco_warnings_are_dropped_and_no_log_lands_in_the_cwd(tmp_path, tasks):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    p = subprocess.run([sys.executable, "-c", MUJOCO_SCRIPT, *tasks], cwd=cwd,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    assert not any(h in out for h in HARMLESS), out
    assert "Nan, Inf or huge value in QPOS" in p.stderr, out
    assert not list(cwd.iterdir())
    if tasks == ["HalfCheetah-v4"]:  # MuJoCo's own handler path: logged in the cache dir
        log = tmp_path / "cache" / "simbabench" / "MUJOCO_LOG.TXT"
        assert "QPOS" in log.read_text()


# -- the launcher --------------------------------------------------------------------------------

def _plan(tmp_path, **extra):
    from harness.plan import build_plan

    given = {"task": "cartpole-balance", "seeds": "3", "frames": "1000",
             "root": str(tmp_path), "exp": "e", **extra}
    return build_plan(given)


def _complete(plan, r, device):
    from harness.plan import refresh_states
    from harness.store import atomic_write_json

    atomic_write_json(r.store.config_path, {"run_id": r.run_id})
    r.store.set_status("completed", frames_done=r.run_cfg.frames, wall_time_s=36.0,
                       device=device)
    refresh_states(plan)


def test_launch_summary_names_the_unit_actually_spent(tmp_path):
    from harness.launch import summary

    plan = _plan(tmp_path, workers="2")
    _complete(plan, plan.runs[0], "cpu")
    text = summary(plan).splitlines()[-1]
    assert "GPU" not in text and "2 worker(s) on the local CPUs" in text, text
    plan = _plan(tmp_path, workers="2")
    _complete(plan, plan.runs[0], "NVIDIA H100 80GB HBM3")
    assert "sharing the local GPU" in summary(plan).splitlines()[-1]
    slurm = _plan(tmp_path, backend="slurm", profile="local")
    assert "GPU-hours" in summary(slurm).splitlines()[-1]
    cpu_jobs = _plan(tmp_path, backend="slurm", profile="local", gpus_per_job="0")
    assert "GPU" not in summary(cpu_jobs).splitlines()[-1]


def test_launch_progress_shows_each_running_run_and_an_eta(tmp_path):
    import collections

    from harness.launch import progress_lines

    plan = _plan(tmp_path)
    runs = plan.runs
    runs[0].store.set_status("running", frames_done=400)
    runs[1].store.set_status("completed", frames_done=1000)
    codes = collections.Counter(completed=1)
    lines = progress_lines(runs, [runs[0], runs[2]], codes, elapsed=70.0, start_frames=0)
    assert "1/3 runs finished" in lines[0] and "frames 1400/3000 (47%)" in lines[0]
    assert "ETA 1m20s" in lines[0], lines[0]
    assert lines[1].endswith("cartpole-balance seed 0: 400/1000 frames (40%)")
    assert lines[2].endswith("cartpole-balance seed 2: 0/1000 frames (0%)")
    early = progress_lines(runs, [runs[0]], codes, elapsed=5.0, start_frames=1400, spf=0.01)
    assert "ETA ~16s (measured)" in early[0], early[0]
