"""What a run leaves behind: evaluation rows (on separately seeded eval envs), training-metric
rows, the status lifecycle and the checkpoints (small state + append-only replay segments).
Without a store (benchmarks) it still evaluates, and writes nothing.
"""

from __future__ import annotations

import shutil

import pandas as pd

from harness import checkpoint
from harness.evaluate import evaluate
from harness.store import RunDir, now
from suites import make_env


class Recorder:
    def __init__(self, store: RunDir | None, cfg, task, eval_seed: int, eval_every: int,
                 echo, make_env=make_env):
        self.store, self.cfg, self.task = store, cfg, task
        self.make_env = make_env  # in this process, or a harness.envpool one
        self.eval_seed, self.eval_every = eval_seed, eval_every
        self.echo = echo
        self.eval_envs = None
        self.last_eval: dict[str, float] = {}
        self.metrics_rows: pd.DataFrame | None = None

    # -- evaluation and metrics ---------------------------------------------------------------
    def evaluate(self, frames: int, policy, policy_obs) -> dict[str, float]:
        """`eval_episodes` deterministic episodes; episode numbers follow the evaluation index,
        so every evaluation is reproducible on its own. Appends its rows to eval.csv."""
        if self.eval_envs is None:
            self.eval_envs = [self.make_env(self.task, self.eval_seed)
                              for _ in range(self.cfg.eval_episodes)]
        index = frames // self.eval_every if self.eval_every else 0
        result = evaluate(self.eval_envs, policy, policy_obs,
                          first_episode=index * self.cfg.eval_episodes)
        self.last_eval = result
        if self.store is not None:
            self.store.append_eval_rows([
                {"exp_name": self.cfg.exp, "env_name": self.task.name, "seed": self.cfg.seed,
                 "metric": m, "env_step": frames, "value": v} for m, v in result.items()])
        return result

    def log_row(self, frames: int, row: dict) -> dict:
        """One metrics.parquet row (kept in memory; each row rewrites the file, never re-reads
        it) and the status's progress."""
        row = {**row, **{f"eval/{k}": v for k, v in self.last_eval.items()}}
        if self.store is not None:
            self.metrics_rows = pd.concat([self.metrics_rows, pd.DataFrame([row])],
                                          ignore_index=True)
            self.store.write_metrics(self.metrics_rows)
            self.store.set_status("running", None, frames_done=frames)
        return row

    # -- checkpoints ----------------------------------------------------------------------------
    def load(self, max_frames: int | None = None) -> tuple | None:
        """(frames, arrays, meta, path) of the newest usable checkpoint (at most `max_frames`),
        or None. When every checkpoint is unusable they are moved aside and the run starts
        from scratch."""
        store = self.store
        if store is None or not checkpoint.exists(store.checkpoint_dir):
            return None
        try:
            return checkpoint.load_latest(store.checkpoint_dir, max_frames)
        except checkpoint.NoCheckpoint as e:
            aside = checkpoint.set_aside(store.checkpoint_dir)
            note = f"{e}; starting from scratch (the unusable checkpoints were moved to {aside.name})"
            self.echo(f"{store.path}: {note}")
            store.log(note)
            return None

    def save(self, frames: int, replay, state) -> None:
        """Append the replay data added since the last save as one segment, then the small
        state (`state() -> (arrays, meta)`, taken after the segment is committed) with the
        list of segments it needs."""
        if self.store is None:
            return
        pending = replay.pending_segment()
        if pending is not None:
            replay.commit_segment(checkpoint.write_segment(self.store.checkpoint_dir, *pending))
        arrays, meta = state()
        checkpoint.save(self.store.checkpoint_dir, frames, arrays, meta,
                        segments=replay.segments)

    def finish(self, frames: int, arrays: dict, meta: dict, wall: float, updates: int) -> None:
        """Completed: keep the trained policy and statistics, drop the heavy checkpoints."""
        checkpoint.save(self.store.path / "final", frames, arrays, meta)
        shutil.rmtree(self.store.checkpoint_dir, ignore_errors=True)
        self.store.set_status("completed", None, frames_done=frames, wall_time_s=wall,
                              last_eval=self.last_eval, finished_at=now(), updates=updates)
        self.store.log(f"completed at frame {frames}: {self.last_eval}")
