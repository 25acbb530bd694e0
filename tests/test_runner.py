"""The runner and run store on a real fast task: files, exact resume after kill -9, corrupt
checkpoints, completed runs, NaN handling, bad input, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import checkpoint
from harness.store import RunDir

TINY = ["task=cartpole-balance", "frames=3000", "warmup_steps=250", "actor.width=16",
        "critic.width=32", "critic.depth=1", "batch_size=32", "eval_every=1000",
        "eval_episodes=2", "log_every=500", "metrics_every=1000", "checkpoint_every=400",
        "progress=lines"]


def _cmd(root, *extra, exp="t"):
    keys = {e.split("=")[0] for e in extra}
    base = [a for a in TINY if a.split("=")[0] not in keys]
    return [sys.executable, "-m", "harness.run", *base, f"root={root}", f"exp={exp}", *extra]


def _run(root, *extra, exp="t", check=True):
    p = subprocess.run(_cmd(root, *extra, exp=exp), capture_output=True, text=True,
                       timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stderr[-3000:]}")
    return p


def _dir(root, exp="t", task="cartpole-balance", seed=0) -> Path:
    return Path(root) / exp / task / f"seed_{seed}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run; other tests compare against its eval.csv."""
    root = tmp_path_factory.mktemp("ref")
    _run(root)
    return root


def test_a_run_writes_the_documented_layout(reference):
    d = _dir(reference)
    assert {p.name for p in d.iterdir()} >= {"config.json", "status.json", "eval.csv",
                                            "metrics.parquet", "run.log", "final"}
    assert not (d / "checkpoints").exists()  # heavy checkpoints dropped once completed
    status = json.loads((d / "status.json").read_text())
    assert status["state"] == "completed" and status["frames_done"] == 3000
    assert status["wall_time_s"] > 0 and status["device"]
    config = json.loads((d / "config.json").read_text())
    assert config["task"] == "cartpole-balance" and config["agent"]["critic"]["width"] == 32
    assert config["agent"]["updates_per_frame"] == 1.0 and len(config["run_id"]) == 16
    ev = pd.read_csv(d / "eval.csv")
    assert list(ev.columns) == ["exp_name", "env_name", "seed", "metric", "env_step", "value"]
    assert ev["env_step"].tolist() == [0, 1000, 2000, 3000]
    assert set(ev["metric"]) == {"avg_return"} and (ev["exp_name"] == "t").all()
    m = pd.read_parquet(d / "metrics.parquet")
    assert m["frames"].tolist() == [500, 1000, 1500, 2000, 2500, 3000]
    for col in ("critic/loss", "actor/loss", "temperature/value", "critic/q_mean",
                "throughput/frames_per_s", "time/wall_s", "critic/encoder/effective_pnorm",
                "critic/predictor/effective_lr", "critic/encoder/featnorm"):
        assert col in m.columns, col
    assert m["critic/encoder/effective_pnorm"].notna().sum() == 3  # at 1000, 2000, 3000


def test_a_completed_run_is_skipped(reference):
    d = _dir(reference)
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()}
    p = _run(reference)
    assert "already completed" in p.stderr
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()} == before


def _wait_for_checkpoints(d: Path, n: int, proc, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        ck = sorted((d / "checkpoints").glob("ckpt_*")) if (d / "checkpoints").exists() else []
        if ck and int(ck[-1].name.split("_")[1]) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_kill_9_at_several_points_then_resume_gives_identical_eval_rows(reference, tmp_path):
    d = _dir(tmp_path)
    for frames in (400, 1200, 2000):  # before warm-up ends, mid-training, after an eval
        proc = subprocess.Popen(_cmd(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        _wait_for_checkpoints(d, frames, proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert json.loads((d / "status.json").read_text())["state"] == "running"
    p = _run(tmp_path)
    assert "resumed from ckpt_" in p.stderr
    assert (d / "eval.csv").read_bytes() == (_dir(reference) / "eval.csv").read_bytes()
    status = json.loads((d / "status.json").read_text())
    assert status["state"] == "completed" and status["attempts"] == 4


def test_sigterm_writes_a_checkpoint_and_the_run_continues_exactly(reference, tmp_path):
    d = _dir(tmp_path)
    proc = subprocess.Popen(_cmd(tmp_path, "checkpoint_every=0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    end = time.time() + 300
    while not (d / "eval.csv").exists() or len((d / "eval.csv").read_text().splitlines()) < 3:
        assert time.time() < end and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(timeout=120) == 3
    status = json.loads((d / "status.json").read_text())
    assert status["state"] == "pending" and "SIGUSR2" in status["reason"]
    _run(tmp_path, "checkpoint_every=0")
    assert (d / "eval.csv").read_bytes() == (_dir(reference) / "eval.csv").read_bytes()


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path):
    d = _dir(tmp_path)
    proc = subprocess.Popen(_cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_checkpoints(d, 1600, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = sorted((d / "checkpoints").glob("ckpt_*"))
    assert len(ckpts) >= 2  # 3 when the kill landed between a save and the old one's removal
    victim = sorted((ckpts[-1] / "arrays").glob("agent*"))[0]
    data = bytearray(victim.read_bytes())
    data[-8:] = b"\x00\xff" * 4
    victim.write_bytes(bytes(data))
    p = _run(tmp_path)
    assert "unusable" in p.stderr and f"resumed from {ckpts[-2].name}" in p.stderr
    assert (d / "eval.csv").read_bytes() == (_dir(reference) / "eval.csv").read_bytes()


def _killed_with_two_checkpoints(tmp_path, frames=1600) -> Path:
    d = _dir(tmp_path)
    proc = subprocess.Popen(_cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_checkpoints(d, frames, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return d


def test_replay_is_saved_as_append_only_segments(reference, tmp_path):
    """Each checkpoint adds one segment of the transitions since the previous one; resuming
    from them is exact; a corrupt newest segment falls back to the previous checkpoint."""
    d = _killed_with_two_checkpoints(tmp_path)
    ckpts = sorted((d / "checkpoints").glob("ckpt_*"))
    metas = [json.loads((c / "meta.json").read_text()) for c in ckpts]
    newest = metas[-1]["segments"]
    assert [r["name"] for r in metas[-2]["segments"]] == [r["name"] for r in newest[:-1]]
    steps = [r["t"] for r in newest]
    assert steps[0][0] == 0 and all(a[1] == b[0] for a, b in zip(steps, steps[1:]))
    assert steps[-1][1] == metas[-1]["meta"]["replay"]["added"]
    # the checkpoint directory itself holds no replay data
    assert not list((ckpts[-1] / "arrays").glob("replay*"))
    victim = d / "checkpoints" / checkpoint.SEGMENTS / newest[-1]["name"] / "obs.npy"
    data = bytearray(victim.read_bytes())
    data[-4:] = b"\x00\xff\x00\xff"
    victim.write_bytes(bytes(data))
    p = _run(tmp_path)
    assert "checksum mismatch in segment" in p.stderr
    assert f"resumed from {ckpts[-2].name}" in p.stderr
    assert (d / "eval.csv").read_bytes() == (_dir(reference) / "eval.csv").read_bytes()


def test_a_missing_segment_restarts_the_run_cleanly(reference, tmp_path):
    """No checkpoint usable (a segment every checkpoint needs is gone): the run starts from
    scratch, keeps the unusable checkpoints aside, and still ends with the same results."""
    d = _killed_with_two_checkpoints(tmp_path)
    first = sorted((d / "checkpoints" / checkpoint.SEGMENTS).iterdir())[0]
    (first / "action.npy").unlink()
    p = _run(tmp_path)
    assert "starting from scratch" in p.stderr and "resumed from" not in p.stderr
    assert (d / "checkpoints.unusable-1" / checkpoint.SEGMENTS).is_dir()
    assert (d / "eval.csv").read_bytes() == (_dir(reference) / "eval.csv").read_bytes()


def test_non_finite_losses_fail_the_run_and_keep_the_last_good_checkpoint(tmp_path):
    p = _run(tmp_path, "lr_init=1e38", "lr_end=1e38", "checkpoint_every=200", check=False)
    assert p.returncode == 1
    d = _dir(tmp_path)
    status = json.loads((d / "status.json").read_text())
    assert status["state"] == "failed"
    assert "non-finite" in status["reason"] and "loss" in status["reason"]
    assert "at update" in status["reason"] and "frame" in status["reason"]
    frames, _, meta, _ = checkpoint.load_latest(d / "checkpoints")
    assert 0 < frames <= status["frames_done"]


@pytest.mark.parametrize("args,needle", [
    (["critic.widht=64"], "critic.width"),
    (["seed=abc"], "expected int"),
    (["task=cartpole-balanse"], "cartpole-balance"),
    (["progress=fancy"], "auto, bar, lines, none"),
    (["scaler_init=nope"], "paper, release"),
    (["agent=simbav3"], "simbav2"),
    (["utd=2", "updates_per_frame=2"], "disagree"),
    (["frames=0"], "bad value 0 for frames: must be >= 1"),
    (["critic.width=0"], "bad value 0 for critic.width"),
    (["critic.width=64"], "task= is required"),
    (["frames"], "key=value"),
])
def test_bad_input_is_rejected_before_anything_starts(tmp_path, args, needle):
    p = subprocess.run([sys.executable, "-m", "harness.run", f"root={tmp_path}", *args],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_unknown_key_lists_the_valid_keys(tmp_path):
    p = subprocess.run([sys.executable, "-m", "harness.run", "nonsense=1"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "valid keys:" in p.stderr and "critic.width" in p.stderr


def test_another_config_in_the_same_run_directory_is_refused(reference):
    p = _run(reference, "critic.width=64", check=False)
    assert p.returncode == 1 and "another configuration" in p.stderr


def test_a_crash_during_append_leaves_the_previous_file(tmp_path, monkeypatch):
    store = RunDir(tmp_path, "e", "cartpole-balance", 0)
    row = dict(exp_name="e", env_name="cartpole-balance", seed=0, metric="avg_return",
               env_step=0, value=1.5)
    store.append_eval_rows([row])
    before = store.eval_path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.append_eval_rows([{**row, "env_step": 1000}])
    monkeypatch.undo()
    assert store.eval_path.read_bytes() == before
    assert [p.name for p in store.path.iterdir()] == ["eval.csv"]  # no temp file left
    assert pd.read_csv(store.eval_path)["env_step"].tolist() == [0]


def test_a_second_process_cannot_take_a_held_run(tmp_path):
    from harness.store import RunLocked

    a = RunDir(tmp_path, "e", "cartpole-balance", 0)
    a.acquire()
    code = ("from harness.store import RunDir, RunLocked\n"
            f"r = RunDir({str(tmp_path)!r}, 'e', 'cartpole-balance', 0)\n"
            "try:\n    r.acquire(); print('took it')\nexcept RunLocked as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "held by another process" in out and f"pid {os.getpid()}" in out
    a.release()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "took it" in out
    assert RunLocked


def test_run_status_is_one_typed_contract(tmp_path):
    """status.json is read and written through harness.store.RunStatus by the runner, plan,
    launch, status and analysis: typed fields, unknown keys kept, bad values read as unset."""
    from analysis.store import read_run
    from harness.store import RunDir, RunStatus, read_status

    store = RunDir(tmp_path, "e", "cartpole-balance", 0)
    st = store.set_status("running", None, frames_done=400, frames=1000, device="cpu")
    assert isinstance(st, RunStatus) and st.started == st.updated and st.finished is None
    raw = json.loads(store.status_path.read_text())
    raw.update(frames_done="lots", custom={"a": 1})          # a hand-edited file
    store.status_path.write_text(json.dumps(raw))
    st = read_status(store.path)
    assert st.frames_done == 0 and st.frames == 1000 and st.extra == {"custom": {"a": 1}}
    st = store.set_status("completed", None, frames_done=1000, wall_time_s=3.5)
    assert st.completed and st.finished and st.extra == {"custom": {"a": 1}}
    assert json.loads(store.status_path.read_text())["custom"] == {"a": 1}
    with pytest.raises(TypeError, match="unknown status field"):
        store.set_status("running", None, frame_done=1)
    store.status_path.write_text('{"state": "comple')    # truncated
    assert read_status(store.path).state == "pending"
    store.set_status("failed", "boom", frames_done=10)
    meta = read_run(store.path, lambda p: None).meta()
    assert (meta["state"], meta["reason"], meta["frames_done"]) == ("failed", "boom", 10.0)
