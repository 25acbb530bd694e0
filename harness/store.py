"""The run store: one directory per run, atomic files, status, results and a per-run lock.

Layout of `<root>/<exp>/<task>/seed_<seed>/`:
  config.json       resolved config and the stable run id
  status.json       {"state": pending|running|completed|failed, "reason", timestamps, ...}
  eval.csv          evaluation rows in the published long format
                    (exp_name, env_name, seed, metric, env_step, value)
  metrics.parquet   training metrics, one row per log point (`frames` + flat metric columns)
  checkpoints/      the last two checkpoints (see checkpoint.py)
  run.log           plain progress lines
Every file is replaced atomically (temp file + fsync + rename): a crash leaves the old or the
new version, never a torn one.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import io
import json
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

EVAL_COLUMNS = ["exp_name", "env_name", "seed", "metric", "env_step", "value"]
STATES = ("pending", "running", "completed", "failed")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask can only be read by setting
    it, which would briefly affect files other threads create)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically. The file gets the mode an ordinary `open(path, "w")`
    would give it (0666 & ~umask), not mkstemp's private 0600: on a shared cluster filesystem
    the group (or a collaborator's analysis) reads the run store."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


class RunLocked(RuntimeError):
    """Another process holds this run."""


class RunDir:
    def __init__(self, root: str | Path, exp: str, task: str, seed: int):
        self.path = Path(root) / exp / task / f"seed_{seed}"
        self.exp, self.task, self.seed = exp, task, seed
        self._lock_fd: int | None = None

    # -- paths -------------------------------------------------------------------------------
    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    eval_path = property(lambda self: self.path / "eval.csv")
    metrics_path = property(lambda self: self.path / "metrics.parquet")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    log_path = property(lambda self: self.path / "run.log")

    # -- status and config -------------------------------------------------------------------
    def status(self) -> dict:
        return read_json(self.status_path, default={"state": "pending", "reason": None})

    def set_status(self, state: str, reason: str | None = None, **extra) -> dict:
        assert state in STATES, state
        st = self.status()
        st.update(extra)
        st.update(state=state, reason=reason, updated=now())
        if state == "running" and "started" not in st:
            st["started"] = st["updated"]
        if state in ("completed", "failed"):
            st["finished"] = st["updated"]
        atomic_write_json(self.status_path, st)
        return st

    def config(self) -> dict | None:
        return read_json(self.config_path)

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.config_path, config)

    # -- results -----------------------------------------------------------------------------
    def eval_rows(self) -> list[dict]:
        if not self.eval_path.exists():
            return []
        with open(self.eval_path, newline="") as f:
            return list(csv.DictReader(f))

    def write_eval_rows(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=EVAL_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in EVAL_COLUMNS})
        atomic_write_text(self.eval_path, buf.getvalue())

    def append_eval_rows(self, rows: list[dict]) -> None:
        self.write_eval_rows(self.eval_rows() + rows)

    def metrics(self) -> pd.DataFrame:
        if not self.metrics_path.exists():
            return pd.DataFrame({"frames": pd.Series(dtype="int64")})
        return pd.read_parquet(self.metrics_path)

    def write_metrics(self, df: pd.DataFrame) -> None:
        buf = io.BytesIO()
        df.reset_index(drop=True).to_parquet(buf, index=False)
        atomic_write_bytes(self.metrics_path, buf.getvalue())

    def truncate_results(self, frames: int) -> None:
        """Drop result rows written after `frames` (they are re-created identically when a run
        resumes from a checkpoint at `frames`)."""
        rows = self.eval_rows()
        kept = [r for r in rows if float(r["env_step"]) <= frames]
        if len(kept) != len(rows):
            self.write_eval_rows(kept)
        df = self.metrics()
        if len(df) and (df["frames"] > frames).any():
            self.write_metrics(df[df["frames"] <= frames])

    def log(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(f"{now()} {line}\n")

    # -- one process per run ---------------------------------------------------------------
    def acquire(self) -> None:
        """Take the run's lock (advisory flock, released when the process dies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o666)  # & ~umask
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(self.path / ".lock").read_text().strip()
            os.close(fd)
            raise RunLocked(f"run {self.path} is held by another process ({holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} "
                     f"job {os.environ.get('SLURM_JOB_ID', '-')}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
