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
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

EVAL_COLUMNS = ["exp_name", "env_name", "seed", "metric", "env_step", "value"]
STATES = ("pending", "running", "completed", "failed")

# The run directory's files: the one description of the layout (the runner, plan, launch,
# status and analysis all read these names from here).
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
EVAL_FILE = "eval.csv"
METRICS_FILE = "metrics.parquet"
LOG_FILE = "run.log"
JOB_FILE = "job.json"
CHECKPOINT_DIR = "checkpoints"
FINAL_DIR = "final"
RUN_FILES = (EVAL_FILE, CONFIG_FILE, STATUS_FILE, METRICS_FILE)  # any one marks a run dir
FRAMES_COLUMN = "frames"   # metrics.parquet's x axis


@dataclass
class RunStatus:
    """status.json, typed. Unknown keys are kept (`extra`) and written back unchanged; values
    of the wrong type (a hand-edited or truncated file) read as unset."""

    state: str = "pending"               # one of STATES
    reason: str | None = None            # why it failed / stopped
    frames_done: int = 0                 # env frames completed (checkpointed or evaluated)
    frames: int | None = None            # the run's budget in env frames
    attempts: int = 0                    # processes that have started it
    run_id: str | None = None
    device: str | None = None            # JAX device kind it last ran on
    host: str | None = None
    job_id: str | None = None            # SLURM `<array>_<task>` or job id
    wall_time_s: float | None = None     # completed: wall seconds over all attempts
    updates: int | None = None           # completed: gradient updates done
    last_eval: dict = field(default_factory=dict)
    started: str | None = None           # ISO timestamps (UTC)
    updated: str | None = None
    finished: str | None = None
    finished_at: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | None) -> "RunStatus":
        d = dict(d or {})
        types = {f.name: f.type for f in fields(cls) if f.name != "extra"}
        kw, extra = {}, {}
        for k, v in d.items():
            if k not in types:
                extra[k] = v
            elif _fits(v, types[k]):
                kw[k] = v
        if kw.get("state") not in STATES:
            kw["state"] = "pending"
        return cls(**kw, extra=extra)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **out}  # every field, unset ones as null: a fixed schema

    @property
    def completed(self) -> bool:
        return self.state == "completed"


def _fits(v, annotation: str) -> bool:
    """Whether a JSON value matches a RunStatus field's annotation (kept as a string by
    `from __future__ import annotations`)."""
    if v is None:
        return "None" in annotation
    kinds = {"str": str, "int": int, "float": (int, float), "dict": dict}
    return any(isinstance(v, t) and not (isinstance(v, bool) and name != "bool")
               for name, t in kinds.items() if name in annotation)


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


def read_status(run_dir: Path) -> RunStatus:
    """A run directory's status (pending when status.json is missing or unreadable: a run
    killed while writing it leaves the previous version, never a torn one)."""
    try:
        return RunStatus.from_dict(read_json(Path(run_dir) / STATUS_FILE))
    except ValueError:
        return RunStatus()


class RunLocked(RuntimeError):
    """Another process holds this run."""


class RunDir:
    def __init__(self, root: str | Path, exp: str, task: str, seed: int):
        self.path = Path(root) / exp / task / f"seed_{seed}"
        self.exp, self.task, self.seed = exp, task, seed
        self._lock_fd: int | None = None

    # -- paths -------------------------------------------------------------------------------
    config_path = property(lambda self: self.path / CONFIG_FILE)
    status_path = property(lambda self: self.path / STATUS_FILE)
    eval_path = property(lambda self: self.path / EVAL_FILE)
    metrics_path = property(lambda self: self.path / METRICS_FILE)
    checkpoint_dir = property(lambda self: self.path / CHECKPOINT_DIR)
    log_path = property(lambda self: self.path / LOG_FILE)

    # -- status and config -------------------------------------------------------------------
    def status(self) -> RunStatus:
        return read_status(self.path)

    def set_status(self, state: str, reason: str | None = None, **changes) -> RunStatus:
        """Update status.json: `state`, `reason` and any RunStatus fields in `changes`."""
        assert state in STATES, state
        st = self.status()
        for k, v in changes.items():
            if not hasattr(st, k) or k == "extra":
                raise TypeError(f"unknown status field {k!r}")
            setattr(st, k, v)
        st.state, st.reason, st.updated = state, reason, now()
        if state == "running" and st.started is None:
            st.started = st.updated
        if state in ("completed", "failed"):
            st.finished = st.updated
        atomic_write_json(self.status_path, st.to_dict())
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
