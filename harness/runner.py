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

The work is split three ways: `harness.worker.EnvWorker` (training env, episode bookkeeping,
host normalisers), `harness.learner.Learner` (agent state, replay and its sampling, the fused
update schedule, the non-finite check) and `harness.recorder.Recorder` (evaluation rows,
metrics rows, status, checkpoints). `Run` owns the schedule (when to evaluate, log, measure,
checkpoint), the run's lifecycle (lock, signals, failure status) and the timers.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import traceback

import jax

from agents import base as contract
from agents.base import AgentSpec
from harness.config import RunConfig, run_id, to_dict
from harness.learner import Learner, RunFailed
from harness.progress import Progress
from harness.recorder import Recorder
from harness.store import RunDir
from harness.worker import EnvWorker
from suites import env_seeds, get_task, make_env

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def _slurm_job_id() -> str | None:
    """`<array job>_<task>` for array tasks (as sacct and submitit name them), else the job id."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


__all__ = ["Preempted", "Run", "RunFailed", "agent_spec", "resolve"]


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


class Schedule:
    """When, after an agent step that reached frame f, to measure stability metrics,
    evaluate, write a log row and checkpoint. `every`: name -> period in env frames (0/None:
    never); each fires when f reaches its next multiple, then moves past f."""

    def __init__(self, frames: int, every: dict[str, int]):
        self.every = every
        self.next = {k: (frames // v + 1) * v if v else None for k, v in every.items()}

    def due(self, name: str, f: int) -> bool:
        n = self.next[name]
        if n is None or f < n:
            return False
        while self.next[name] <= f:
            self.next[name] += self.every[name]
        return True

    def flags(self, f: int, done: bool) -> dict[str, bool]:
        """Evaluation and a log row also at the budget; stability values get their own row;
        no periodic checkpoint at the budget (the run finishes instead)."""
        metrics = self.due("metrics", f)
        return {"metrics": metrics, "eval": self.due("eval", f) or done,
                "log": self.due("log", f) or done or metrics,
                "checkpoint": self.due("checkpoint", f) and not done}


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
        self.make_env = make_env  # where envs live: here, or a harness.envpool (MultiRun)

    # -- state --------------------------------------------------------------------------------
    def _fresh(self) -> None:
        seed = self.cfg.seed
        train_seed, eval_seed = env_seeds(seed)
        obs_norm, rew_scale = contract.normalizers(self.algo, self.agent_cfg, self.spec)
        self.worker = EnvWorker(self.task, seed, train_seed, obs_norm, rew_scale,
                                self.make_env)
        self.learner = Learner(self.algo, self.agent_cfg, self.spec, seed,
                               capacity=min(self.cfg.buffer_size, self.total_steps), k=self.k,
                               batch=self.batch, updates_per_step=self.rate * self.repeat,
                               warmup_steps=self.cfg.warmup_steps)
        self.recorder = Recorder(self.store, self.cfg, self.task, eval_seed, self.eval_every,
                                 self.echo, self.make_env)
        self.wall = 0.0                         # wall seconds before this process took over
        self._since = time.perf_counter()
        self.timers = {"env": 0.0, "act": 0.0, "update": 0.0, "eval": 0.0}

    @property
    def steps(self) -> int:
        return self.worker.steps if hasattr(self, "worker") else 0

    @property
    def frames(self) -> int:
        return self.steps * self.repeat

    @property
    def updates(self) -> int:
        return self.learner.updates

    @property
    def last_eval(self) -> dict:
        return self.recorder.last_eval

    def _state(self) -> tuple[dict, dict]:
        arrays: dict = {}
        meta: dict = {"run_id": self.record["run_id"], "wall": self.elapsed,
                      "timers": self.timers, "last_eval": self.recorder.last_eval}
        self.worker.state(arrays, meta)
        self.learner.state(arrays, meta)
        return arrays, meta

    def _restore(self, arrays: dict, meta: dict) -> None:
        if meta["run_id"] != self.record["run_id"]:
            raise RunFailed("checkpoint belongs to another configuration "
                            f"({meta['run_id']} != {self.record['run_id']})")
        from harness.checkpoint import segment_arrays
        self.learner.restore(arrays, meta, lambda rec: segment_arrays(arrays, rec))
        self.worker.restore(arrays, meta)
        self.wall, self.timers = meta["wall"], meta["timers"]
        self.recorder.last_eval = meta["last_eval"]

    # -- the loop -------------------------------------------------------------------------------
    def _agent_step(self) -> None:
        w, learner = self.worker, self.learner
        t0 = time.perf_counter()
        w.observe()
        action = (w.random_action() if learner.warming_up
                  else learner.act(w.policy_obs(w.obs), w.steps))
        t1 = time.perf_counter()
        transition = w.step(action)
        t2 = time.perf_counter()
        self.timers["act"] += t1 - t0
        self.timers["env"] += t2 - t1
        learner.observe(transition, w.normalise, self.frames)
        self.timers["update"] += time.perf_counter() - t2

    def _evaluate(self) -> None:
        t0 = time.perf_counter()
        self.recorder.evaluate(self.frames, self.learner.eval_policy, self.worker.policy_obs)
        self.timers["eval"] += time.perf_counter() - t0

    @property
    def elapsed(self) -> float:
        """Wall seconds of the run over all its processes."""
        return self.wall + (time.perf_counter() - self._since)

    def _log_row(self) -> dict:
        row = {"frames": self.frames, "updates": self.updates, **self.learner.take_metrics()}
        wall = self.elapsed
        row.update({"time/wall_s": wall, "train/episode_return": self.worker.last_return,
                    **{f"time/{k}_s": v for k, v in self.timers.items()},
                    "throughput/frames_per_s": self.frames / max(wall, 1e-9),
                    "throughput/updates_per_s": self.updates / max(self.timers["update"], 1e-9),
                    "norm/reward_scale": self.worker.reward_scale})
        return self.recorder.log_row(self.frames, row)

    def _checkpoint(self) -> None:
        self.recorder.save(self.frames, self.learner.replay, self._state)

    # -- driving -------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._stop = signum

    def claim(self) -> dict | None:
        """Take the run's lock, unless it is already completed: then its last evaluation
        (nothing to do). RunFailed when the directory holds another configuration."""
        store = self.store
        if store is None:
            return None
        existing = store.config()
        if existing and existing.get("run_id") != self.record["run_id"]:
            raise RunFailed(f"{store.path} holds a run with another configuration "
                            f"(run id {existing.get('run_id')} != {self.record['run_id']});"
                            " use another exp= or remove that directory")
        if not store.status().completed:
            store.acquire()
        # (re)read after taking the lock: another process may have finished it meanwhile
        st = store.status()
        if st.completed:
            store.release()
            self.echo(f"{store.path}: already completed, nothing to do")
            return st.last_eval
        return None

    def run(self) -> dict:
        """Run to the budget (or resume and finish). Returns the last evaluation."""
        store = self.store
        done = self.claim()
        if done is not None:
            return done
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
                                 frames_done=self.frames)
                store.log("failed:\n" + traceback.format_exc())
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            if store is not None:
                store.release()

    def prepare_store(self) -> None:
        """config.json (with the agent's scale facts) before anything else is written."""
        if self.store is not None:
            if "scale" not in self.record:
                self.record["scale"] = contract.scale_facts(self.algo, self.agent_cfg, self.spec)
            self.store.write_config(self.record)

    def start(self, loaded) -> bool:
        """Continue from `loaded` (a checkpoint from Recorder.load) or from scratch; results
        are truncated to match and the status says running. True when resumed."""
        store = self.store
        if store is not None:
            if loaded is not None:
                frames, arrays, meta, path = loaded
                self._restore(arrays, meta)
                store.truncate_results(frames)
                self.echo(f"{store.path}: resumed from {path.name} (frame {frames})")
                store.log(f"resumed from {path.name}")
            else:
                store.truncate_results(-1)
            store.set_status("running", None, run_id=self.record["run_id"],
                             frames_done=self.frames, frames=self.cfg.frames,
                             device=jax.devices()[0].device_kind, host=os.uname().nodename,
                             job_id=_slurm_job_id(),
                             attempts=store.status().attempts + 1)
            # kept in memory: each log row rewrites the file, never re-reads it
            self.recorder.metrics_rows = store.metrics()
        self._since = time.perf_counter()
        return loaded is not None

    def make_progress(self) -> Progress:
        return Progress(self.cfg.progress, self.cfg.frames, self.echo,
                        label=f"{self.task.name} seed {self.cfg.seed}", start=self.frames,
                        log=self.store.log if self.store is not None else None)

    def _run(self) -> dict:
        self._fresh()
        self.prepare_store()
        resumed = self.start(self.recorder.load())
        progress = self.make_progress()
        if not resumed:
            self._evaluate()
        schedule = self.schedule()
        while self.steps < self.total_steps:
            self._agent_step()
            done = self.steps >= self.total_steps
            flags = schedule.flags(self.frames, done)
            self._after_step(flags, progress)
            if self._stop is not None and not done:
                self._stopped(signal.Signals(self._stop).name)
                raise Preempted(signal.Signals(self._stop).name)
            if flags["checkpoint"]:
                self._checkpoint()
        progress.close()
        self.wall, self._since = self.elapsed, time.perf_counter()
        if self.store is not None:
            self._finish()
        return self.last_eval

    def schedule(self) -> "Schedule":
        return Schedule(self.frames, {"metrics": self.metrics_every, "eval": self.eval_every,
                                      "log": self.cfg.log_every,
                                      "checkpoint": self.cfg.checkpoint_every})

    def _after_step(self, flags: dict, progress) -> None:
        """This run's work at the end of a step: stability metrics, evaluation, a log row."""
        if flags["metrics"]:
            self.learner.measure_stability(self.worker.normalise)
        if flags["eval"]:
            self._evaluate()
        if flags["log"]:
            progress.update(self.frames, self._log_row())

    def _stopped(self, name: str) -> None:
        """A stop signal: checkpoint, and the status says the run continues from it."""
        self._checkpoint()
        f = self.frames
        if self.store is not None:
            self.store.set_status("pending", f"stopped by {name} at frame {f}; "
                                  "resumes from its checkpoint", frames_done=f)
            self.store.log(f"stopped by {name} at frame {f}")

    def _finish(self) -> None:
        arrays, meta = self._state()
        self.recorder.finish(self.frames, arrays, meta, self.wall, self.updates)
