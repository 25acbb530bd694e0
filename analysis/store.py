"""Everything the analysis knows about our run store, in one place.

The harness writes one directory per run, `<root>/<exp>/<task>/seed_<seed>/`, holding

* `config.json`  the resolved config: {"run_id", "exp", "task" (canonical id), "seed",
                 "frames" (budget), "agent": {"name", "label", <the agent's own settings>},
                 "scale": {"width", "depth", "params": {"actor", "critic", "total", ...},
                 "flops_per_update", "updates_per_frame", ...}}; analysis reads only
                 `agent.name`/`agent.label` and `scale`, never an agent's own settings
* `status.json`  {"state": pending|running|completed|failed, "reason", "frames_done",
                 "wall_time_s", "device", ...}
* `eval.csv`     evaluations in the published long format (header
                 `exp_name,env_name,seed,metric,env_step,value`, no index column)
* `metrics.parquet`  training metrics, one row per log point: a `frames` column plus flat
                 columns such as `critic/encoder/featnorm` (NaN where not computed)

Any of the files may be missing while a run is pending or was killed; a directory holding any
one of them is a run. The file names and the typed status come from `harness.store` (the one
description of the layout, shared with the runner, plan, launch and status); this module
only says what the analysis takes from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.store import (CONFIG_FILE, EVAL_FILE, FRAMES_COLUMN, METRICS_FILE, RUN_FILES,
                           RunStatus, read_status)

# The paper's stability figure (docs/agents.md): critic feature / parameter / gradient norm and
# effective LR, split into encoder and predictor, by the naming scheme every agent follows
# (agents/stability.py). Keys: (module, quantity) -> column.
DYNAMICS_MODULES = ("encoder", "predictor")
DYNAMICS_QUANTITIES = ("featnorm", "effective_pnorm", "effective_gnorm", "effective_lr")
DYNAMICS_COLUMNS = {(m, q): f"critic/{m}/{q}"
                    for m in DYNAMICS_MODULES for q in DYNAMICS_QUANTITIES}


@dataclass
class StoreRun:
    """One run directory as read from disk (missing files give empty/None fields)."""

    path: Path
    evals: pd.DataFrame                 # long format, possibly empty
    config: dict = field(default_factory=dict)
    status: RunStatus = field(default_factory=RunStatus)

    @property
    def has_metrics(self) -> bool:
        return (self.path / METRICS_FILE).is_file()

    def meta(self) -> dict:
        """Flat per-run facts the analysis uses (NaN / None where the run did not record them)."""
        agent = self.config.get("agent") or {}
        scale = self.config.get("scale") or {}
        params = scale.get("params") or {}
        upf = scale.get("updates_per_frame")
        seed = self.config.get("seed")
        if seed is None and len(self.evals):
            seed = int(self.evals["seed"].iloc[0])
        if seed is None and self.path.name.startswith("seed_"):
            try:
                seed = int(self.path.name[len("seed_"):])
            except ValueError:
                seed = None
        exp = None
        if len(self.evals):
            exp = str(self.evals["exp_name"].iloc[0])
        exp = exp or self.config.get("exp") or self.path.parent.parent.name
        task = self.config.get("task")
        if task is None and len(self.evals):
            task = str(self.evals["env_name"].iloc[0])
        task = task or self.path.parent.name
        return {
            "exp_name": exp,
            "env_name": task,
            "seed": seed,
            "run_dir": str(self.path),
            "run_id": self.config.get("run_id"),
            "agent": agent.get("label") or agent.get("name"),
            "width": _num(scale.get("width")),
            "depth": _num(scale.get("depth")),
            "params": _num(params.get("total")),
            "flops_per_update": _num(scale.get("flops_per_update")),
            # The harness counts updates per env frame; the paper's UTD label is twice that.
            "utd": _num(upf) * 2 if upf is not None else np.nan,
            "budget_frames": _num(self.config.get("frames")),
            "state": self.status.state,
            "reason": self.status.reason,
            "frames_done": _num(self.status.frames_done),
            "wall_time_s": _num(self.status.wall_time_s),
            "device": self.status.device,
            "has_metrics": self.has_metrics,
        }


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return np.nan


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        out = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        # A run killed while writing leaves a truncated file; treat it as "not recorded".
        return {}
    return out if isinstance(out, dict) else {}


def is_run_dir(path: Path) -> bool:
    return any((path / f).is_file() for f in RUN_FILES)


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory under `root` (sorted, so results do not depend on the file system)."""
    dirs = {p.parent for f in RUN_FILES for p in root.rglob(f)}
    return sorted(dirs)


def read_run(path: Path, read_long_csv) -> StoreRun:
    """Read one run directory. `read_long_csv(path)` parses the eval file (see analysis.load)."""
    path = Path(path)
    ev = path / EVAL_FILE
    evals = read_long_csv(ev) if ev.is_file() else None
    if evals is None:
        evals = pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                              [("exp_name", object), ("env_name", object), ("seed", "int64"),
                               ("metric", object), ("env_step", "int64"), ("value", float)]})
    return StoreRun(path=path, evals=evals, config=_read_json(path / CONFIG_FILE),
                    status=read_status(path))


def read_dynamics(run_dir: str | Path) -> pd.DataFrame | None:
    """The norm / effective-LR columns of one run's metrics.parquet: a frame with `frames` and
    the DYNAMICS_COLUMNS the run logged, or None when it logged none of them."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - a half-written parquet file is "no metrics"
        return None
    cols = [c for c in DYNAMICS_COLUMNS.values() if c in names]
    if FRAMES_COLUMN not in names or not cols:
        return None
    df = pd.read_parquet(path, columns=[FRAMES_COLUMN, *cols])
    return df.sort_values(FRAMES_COLUMN).reset_index(drop=True)
