"""One run of the paper's online protocol that can be killed at any agent step and continued
without losing or changing results.

Protocol (docs/simbav2.md, docs/tasks.md): uniform random actions until the buffer holds
`warmup_steps` transitions (the observation statistics are updated all the same), then the
current policy; after each agent step, the updates due at `updates_per_frame` (fractional rates
accumulate) run in fused blocks of k; evaluation at frame 0, every `eval_every` frames and at
the budget, with deterministic episodes on separately seeded envs. Frames count agent steps x
action repeat, as the paper's code and published results do.

Exact resume: a checkpoint holds the agent pytree, normaliser statistics, replay buffer, every
RNG state, counters and the episode in progress (its index and the actions taken so far, which
are replayed on the freshly seeded env).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import time
import traceback
import warnings

import jax
import numpy as np
import pandas as pd

from agents import base as contract
from agents.base import AgentSpec
from harness import checkpoint
from harness.config import RunConfig, run_id, to_dict
from harness.evaluate import evaluate
from harness.progress import Progress
from harness.replay import ReplayBuffer
from harness.store import RunDir, now
from suites import derive_seed, env_seeds, get_task, make_env

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def _slurm_job_id() -> str | None:
    """`<array job>_<task>` for array tasks (as sacct and submitit name them), else the job id."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


class RunFailed(RuntimeError):
    """The run stopped for a reason recorded in its status (non-finite values, ...)."""


class Preempted(RuntimeError):
    """A stop signal arrived; a checkpoint was written and the run can be continued."""


def agent_spec(task, agent_cfg, frames: int) -> AgentSpec:
    """What an agent is built for on `task` with a budget of `frames`."""
    return AgentSpec(obs_dim=task.obs_dim, act_dim=task.act_dim, discount=task.discount,
                     episodic=task.episodic,
                     total_updates=max(1, round(agent_cfg.frame_update_rate * frames)))


def resolve(run_cfg: RunConfig, agent_cfg) -> dict:
    """The record written to config.json: everything a run is, plus derived settings.
    `scale` (filled in by the runner) holds the agent-independent size facts
    (agents.base.scale_facts) that analysis reads."""
    task = get_task(run_cfg.task)
    rate = agent_cfg.frame_update_rate
    spec = agent_spec(task, agent_cfg, run_cfg.frames)
    run = to_dict(run_cfg)
    run["task"] = task.name
    agent = {"name": run_cfg.agent, "label": contract.agent_label(run_cfg.agent),
             **to_dict(agent_cfg), "updates_per_frame": rate}
    return {"run_id": run_id(agent_cfg, run_cfg, task.name), "exp": run_cfg.exp,
            "task": task.name, "seed": run_cfg.seed, "frames": run_cfg.frames,
            "agent": agent, "run": run,
            "derived": {"utd_paper": 2 * rate, "action_repeat": task.action_repeat,
                        "discount": task.discount, "episodic": task.episodic,
                        "total_updates": spec.total_updates,
                        "eval_every": run_cfg.eval_every or 50_000 * task.action_repeat}}


class Run:
    def __init__(self, run_cfg: RunConfig, agent_cfg, store: RunDir | None = None,
                 echo=None):
        run_cfg.validate()
        self.cfg = run_cfg
        self.agent_cfg = agent_cfg
        self.task = get_task(run_cfg.task)
        self.store = store
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self.record = resolve(run_cfg, agent_cfg)
        self.algo = contract.load_agent(run_cfg.agent)
        t = self.task
        self.repeat = t.action_repeat
        self.rate = agent_cfg.frame_update_rate
        self.total_steps = math.ceil(run_cfg.frames / self.repeat)
        self.k = run_cfg.update_block or max(1, round(self.rate * self.repeat))
        self.batch = agent_cfg.batch_size
        self.eval_every = self.record["derived"]["eval_every"]
        self.metrics_every = (0 if run_cfg.metrics_every < 0 else
                              run_cfg.metrics_every or 50_000 * self.repeat)
        self.spec = agent_spec(t, agent_cfg, run_cfg.frames)
        self._stop: int | None = None
        self.steps = 0
        self._act = jax.jit(lambda agent, obs, key, step: self.algo.act(
            agent, obs, jax.random.fold_in(key, step)))
        self._eval_act = jax.jit(lambda agent, obs: self.algo.act(
            agent, obs, jax.random.PRNGKey(0), deterministic=True))

    # -- state --------------------------------------------------------------------------------
    def _fresh(self) -> None:
        seed, t = self.cfg.seed, self.task
        train_seed, self.eval_seed = env_seeds(seed)
        self.env = make_env(t, train_seed)
        self.eval_envs = None
        self.agent = self.algo.init(self.agent_cfg, self.spec, derive_seed(seed, "agent"))
        self.obs_norm, self.rew_scale = contract.normalizers(self.algo, self.agent_cfg, self.spec)
        self.replay = ReplayBuffer(min(self.cfg.buffer_size, self.total_steps), t.obs_dim,
                                   t.act_dim)
        self.replay_rng = np.random.default_rng(derive_seed(seed, "replay"))
        self.warmup_rng = np.random.default_rng(derive_seed(seed, "warmup"))
        self.metrics_rng = np.random.default_rng(derive_seed(seed, "metrics"))
        self.act_key = jax.random.PRNGKey(derive_seed(seed, "act"))
        self.steps = self.updates = 0
        self.updates_due = 0.0
        self.obs, _ = self.env.reset()
        self.episode_actions: list[np.ndarray] = []
        self.episode_return = 0.0
        self.last_return = float("nan")
        self.pending: list[dict] = []           # device metric dicts since the last log row
        self.stability: dict[str, float] = {}
        self.wall = 0.0                         # wall seconds before this process took over
        self._since = time.perf_counter()
        self.timers = {"env": 0.0, "act": 0.0, "update": 0.0, "eval": 0.0}
        self.last_eval: dict[str, float] = {}

    @property
    def frames(self) -> int:
        return self.steps * self.repeat

    def _state(self) -> tuple[dict[str, np.ndarray], dict]:
        leaves = jax.tree_util.tree_flatten_with_path(self.agent)[0]
        arrays = {f"agent/{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves}
        arrays["obs"] = np.asarray(self.obs)
        arrays["episode_actions"] = np.asarray(self.episode_actions, np.float32).reshape(
            -1, self.task.act_dim)
        norms = {}
        for name, n in (("obs_norm", self.obs_norm), ("rew_scale", self.rew_scale)):
            if n is not None:
                norms[name] = jax.tree.map(np.asarray, n.state_dict())
        for name, d in norms.items():
            for k, v in jax.tree_util.tree_flatten_with_path(d)[0]:
                arrays[f"{name}/{jax.tree_util.keystr(k)}"] = np.asarray(v)
        meta = {
            "run_id": self.record["run_id"], "steps": self.steps, "updates": self.updates,
            "updates_due": self.updates_due, "episode": self.env.episode,
            "episode_return": self.episode_return, "last_return": self.last_return,
            "replay": self.replay.state_meta(),
            "rng": {n: getattr(self, n).bit_generator.state
                    for n in ("replay_rng", "warmup_rng", "metrics_rng")},
            "wall": self.elapsed, "timers": self.timers, "last_eval": self.last_eval,
            "pending": self._reduce_pending(), "pending_count": len(self.pending),
        }
        return arrays, meta

    def _restore(self, arrays: dict, meta: dict) -> None:
        if meta["run_id"] != self.record["run_id"]:
            raise RunFailed("checkpoint belongs to another configuration "
                            f"({meta['run_id']} != {self.record['run_id']})")
        leaves, treedef = jax.tree_util.tree_flatten_with_path(self.agent)
        self.agent = jax.tree_util.tree_unflatten(treedef, [
            jax.numpy.asarray(arrays[f"agent/{jax.tree_util.keystr(p)}"]) for p, _ in leaves])
        if "segments" in meta["replay"]:
            self.replay.load(meta["replay"],
                             lambda rec: checkpoint.segment_arrays(arrays, rec))
        else:  # a checkpoint from before append-only segments: the whole buffer in it
            self.replay.load_legacy(arrays, meta["replay"], arrays["obs"])
        for name in ("obs_norm", "rew_scale"):
            n = getattr(self, name)
            if n is None:
                continue
            template = n.state_dict()
            paths, tdef = jax.tree_util.tree_flatten_with_path(template)
            n.load_state_dict(jax.tree_util.tree_unflatten(tdef, [
                arrays[f"{name}/{jax.tree_util.keystr(p)}"] for p, _ in paths]))
        for n, st in meta["rng"].items():
            getattr(self, n).bit_generator.state = st
        self.steps, self.updates = meta["steps"], meta["updates"]
        self.updates_due = meta["updates_due"]
        self.episode_return, self.last_return = meta["episode_return"], meta["last_return"]
        self.wall, self.timers, self.last_eval = meta["wall"], meta["timers"], meta["last_eval"]
        self.pending = [meta["pending"]] * meta["pending_count"] if meta["pending"] else []
        # re-create the episode in progress: same episode seed, same actions
        obs, _ = self.env.reset_to_episode(meta["episode"])
        self.episode_actions = list(arrays["episode_actions"])
        for a in self.episode_actions:
            obs = self.env.step(a)[0]
        if not np.array_equal(obs, arrays["obs"]):
            warnings.warn("replaying the episode in progress did not reproduce the saved "
                          "observation: the environment is not deterministic; continuing "
                          "from the saved observation", stacklevel=2)
        self.obs = arrays["obs"]

    # -- the loop -------------------------------------------------------------------------------
    def _block(self) -> dict:
        batch = self.replay.gather(self.replay.sample_indices(self.replay_rng, self.k,
                                                              self.batch))
        return self._normalise(batch)

    def _normalise(self, batch: dict) -> dict:
        out = dict(batch)
        if self.obs_norm is not None:
            out["obs"] = self.obs_norm.normalize(batch["obs"])
            out["next_obs"] = self.obs_norm.normalize(batch["next_obs"])
        scale = self.rew_scale.scale if self.rew_scale is not None else 1.0
        out["reward"] = (batch["reward"] / scale).astype(np.float32)
        return out

    def _policy_obs(self, obs: np.ndarray) -> np.ndarray:
        return self.obs_norm.normalize(obs) if self.obs_norm is not None else np.asarray(
            obs, np.float32)

    def _agent_step(self) -> None:
        t0 = time.perf_counter()
        if self.obs_norm is not None:
            self.obs_norm.update_one(self.obs)
        if self.replay.size < self.cfg.warmup_steps:
            action = self.warmup_rng.uniform(-1.0, 1.0, self.task.act_dim).astype(np.float32)
        else:
            action = np.asarray(self._act(self.agent, self._policy_obs(self.obs)[None],
                                          self.act_key, self.steps))[0]
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        t2 = time.perf_counter()
        self.timers["act"] += t1 - t0
        self.timers["env"] += t2 - t1
        if self.rew_scale is not None:
            self.rew_scale.update(reward, terminated, truncated)
        self.replay.add(self.obs, action, reward, next_obs, terminated,
                        episode_end=terminated or truncated)
        self.steps += 1
        self.episode_return += reward
        if terminated or truncated:
            self.last_return = self.episode_return
            self.episode_return = 0.0
            self.obs, _ = self.env.reset()
            self.episode_actions = []
        else:
            self.obs = next_obs
            self.episode_actions.append(action)
        if self.replay.size >= max(self.cfg.warmup_steps, 1):
            self.updates_due += self.rate * self.repeat
            while self.updates_due >= self.k - 1e-9:
                self._update()

    def _update(self) -> None:
        t0 = time.perf_counter()
        block = self._block()
        self.agent, metrics = self.algo.update(self.agent, block)
        self.updates += self.k
        self.updates_due -= self.k
        self.pending.append(metrics)
        if "health/finite" not in metrics:
            raise RunFailed("the agent's update returned no health/finite metric "
                            "(required by the contract in agents/base.py)")
        if not bool(metrics["health/finite"]):
            bad = [k for k, v in jax.device_get(metrics).items() if not np.isfinite(v)]
            raise RunFailed(f"non-finite {', '.join(bad) or 'values'} at update "
                            f"{self.updates} (frame {self.frames})")
        self.timers["update"] += time.perf_counter() - t0

    def _reduce_pending(self) -> dict[str, float]:
        if not self.pending:
            return {}
        host = jax.device_get(self.pending)
        return {k: float(np.mean([m[k] for m in host])) for k in host[0]}

    def _evaluate(self) -> None:
        t0 = time.perf_counter()
        if self.eval_envs is None:
            self.eval_envs = [make_env(self.task, self.eval_seed)
                              for _ in range(self.cfg.eval_episodes)]
        index = self.frames // self.eval_every if self.eval_every else 0
        result = evaluate(self.eval_envs, lambda o: self._eval_act(self.agent, o),
                          self._policy_obs, first_episode=index * self.cfg.eval_episodes)
        self.last_eval = result
        self.timers["eval"] += time.perf_counter() - t0
        if self.store is not None:
            self.store.append_eval_rows([
                {"exp_name": self.cfg.exp, "env_name": self.task.name, "seed": self.cfg.seed,
                 "metric": m, "env_step": self.frames, "value": v} for m, v in result.items()])

    def _stability(self) -> None:
        if self.replay.size == 0 or not hasattr(self.algo, "stability_metrics"):
            return
        idx = self.replay.sample_indices(self.metrics_rng, 1, self.batch)[0]
        m = self.algo.stability_metrics(self.agent, self._normalise(self.replay.gather(idx)))
        self.stability = {k: float(v) for k, v in jax.device_get(m).items()}

    @property
    def elapsed(self) -> float:
        """Wall seconds of the run over all its processes."""
        return self.wall + (time.perf_counter() - self._since)

    def _log_row(self) -> dict:
        row = {"frames": self.frames, "updates": self.updates, **self._reduce_pending(),
               **self.stability}
        self.pending, self.stability = [], {}
        wall = self.elapsed
        row.update({"time/wall_s": wall, "train/episode_return": self.last_return,
                    **{f"time/{k}_s": v for k, v in self.timers.items()},
                    "throughput/frames_per_s": self.frames / max(wall, 1e-9),
                    "throughput/updates_per_s": self.updates / max(self.timers["update"], 1e-9),
                    "norm/reward_scale": (self.rew_scale.scale if self.rew_scale else 1.0)})
        row.update({f"eval/{k}": v for k, v in self.last_eval.items()})
        if self.store is not None:
            self.metrics_rows = pd.concat([self.metrics_rows, pd.DataFrame([row])],
                                          ignore_index=True)
            self.store.write_metrics(self.metrics_rows)
            self.store.set_status("running", None, frames_done=self.frames)
        return row

    def _checkpoint(self) -> None:
        """Append the replay data added since the last save as one segment, then save the
        small state with the list of segments it needs."""
        if self.store is not None:
            pending = self.replay.pending_segment()
            if pending is not None:
                record = checkpoint.write_segment(self.store.checkpoint_dir, *pending)
                self.replay.commit_segment(record)
            arrays, meta = self._state()
            checkpoint.save(self.store.checkpoint_dir, self.frames, arrays, meta,
                            segments=self.replay.segments)

    # -- driving -------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._stop = signum

    def run(self) -> dict:
        """Run to the budget (or resume and finish). Returns the last evaluation."""
        store = self.store
        if store is not None:
            existing = store.config()
            if existing and existing.get("run_id") != self.record["run_id"]:
                raise RunFailed(f"{store.path} holds a run with another configuration "
                                f"(run id {existing.get('run_id')} != {self.record['run_id']});"
                                " use another exp= or remove that directory")
            if store.status().get("state") != "completed":
                store.acquire()
            # (re)read after taking the lock: another process may have finished it meanwhile
            st = store.status()
            if st.get("state") == "completed":
                store.release()
                self.echo(f"{store.path}: already completed, nothing to do")
                return st.get("last_eval", {})
        old_handlers = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            return self._run()
        except RunFailed as e:
            if store is not None:
                store.set_status("failed", str(e), frames_done=self.frames)
                store.log(f"failed: {e}")
            raise
        except Preempted:
            raise
        except BaseException as e:
            if store is not None:
                store.set_status("failed", f"{type(e).__name__}: {e}",
                                 frames_done=getattr(self, "steps", 0) * self.repeat)
                store.log("failed:\n" + traceback.format_exc())
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            if store is not None:
                store.release()

    def _run(self) -> dict:
        store = self.store
        self._fresh()
        resumed = False
        if store is not None:
            if "scale" not in self.record:
                self.record["scale"] = contract.scale_facts(self.algo, self.agent_cfg, self.spec)
            store.write_config(self.record)
            loaded = None
            if checkpoint.exists(store.checkpoint_dir):
                try:
                    loaded = checkpoint.load_latest(store.checkpoint_dir)
                except checkpoint.NoCheckpoint as e:
                    aside = checkpoint.set_aside(store.checkpoint_dir)
                    note = (f"{e}; starting from scratch (the unusable checkpoints were moved "
                            f"to {aside.name})")
                    self.echo(f"{store.path}: {note}")
                    store.log(note)
            if loaded is not None:
                frames, arrays, meta, path = loaded
                self._restore(arrays, meta)
                store.truncate_results(frames)
                resumed = True
                self.echo(f"{store.path}: resumed from {path.name} (frame {frames})")
                store.log(f"resumed from {path.name}")
            else:
                store.truncate_results(-1)
            store.set_status("running", None, run_id=self.record["run_id"],
                             frames_done=self.frames, frames=self.cfg.frames,
                             device=jax.devices()[0].device_kind, host=os.uname().nodename,
                             job_id=_slurm_job_id(),
                             attempts=store.status().get("attempts", 0) + 1)
        self._since = time.perf_counter()
        if store is not None:  # kept in memory: each log row rewrites the file, never re-reads it
            self.metrics_rows = store.metrics()
        progress = Progress(self.cfg.progress, self.cfg.frames, self.echo,
                            label=f"{self.task.name} seed {self.cfg.seed}", start=self.frames,
                            log=store.log if store is not None else None)
        if not resumed:
            self._evaluate()
        next_log = (self.frames // self.cfg.log_every + 1) * self.cfg.log_every
        next_eval = (self.frames // self.eval_every + 1) * self.eval_every
        ck = self.cfg.checkpoint_every
        next_ckpt = (self.frames // ck + 1) * ck if ck else None
        next_metrics = ((self.frames // self.metrics_every + 1) * self.metrics_every
                        if self.metrics_every else None)
        while self.steps < self.total_steps:
            self._agent_step()
            f = self.frames
            done = self.steps >= self.total_steps
            stability_now = next_metrics is not None and f >= next_metrics
            if stability_now:
                self._stability()
                while next_metrics <= f:
                    next_metrics += self.metrics_every
            if f >= next_eval or done:
                self._evaluate()
                while next_eval <= f:
                    next_eval += self.eval_every
            if f >= next_log or done or stability_now:  # stability values get their own row
                progress.update(f, self._log_row())
                while next_log <= f:
                    next_log += self.cfg.log_every
            if self._stop is not None and not done:
                self._checkpoint()
                name = signal.Signals(self._stop).name
                if store is not None:
                    store.set_status("pending", f"stopped by {name} at frame {f}; "
                                     "resumes from its checkpoint", frames_done=f)
                    store.log(f"stopped by {name} at frame {f}")
                raise Preempted(name)
            if next_ckpt is not None and f >= next_ckpt and not done:
                self._checkpoint()
                while next_ckpt <= f:
                    next_ckpt += ck
        progress.close()
        self.wall, self._since = self.elapsed, time.perf_counter()
        if store is not None:
            self._finish()
        return self.last_eval

    def _finish(self) -> None:
        """Completed: keep the trained policy and statistics, drop the heavy checkpoints."""
        arrays, meta = self._state()
        checkpoint.save(self.store.path / "final", self.frames, arrays, meta)
        shutil.rmtree(self.store.checkpoint_dir, ignore_errors=True)
        self.store.set_status("completed", None, frames_done=self.frames,
                              wall_time_s=self.wall, last_eval=self.last_eval,
                              finished_at=now(), updates=self.updates)
        self.store.log(f"completed at frame {self.frames}: {self.last_eval}")
