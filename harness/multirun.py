"""K seeds of the same (agent, task, config) in one process (`seeds_per_process=K`).

A GPU is far from full with one SimbaV2 run at the paper's sizes; running K seeds in one
process shares the device, the compiled functions and the Python loop. Each seed is an
ordinary `Run` (its own env worker, replay, sampling RNG, normalisers, eval envs, run
directory, status and checkpoints), so store, resume, status and analysis see ordinary runs;
only acting and the fused update are batched: the K agent states are stacked on a leading seed
axis and one jitted call acts / updates for all of them.

Batching (`batching=`): `map` (a `lax.map` over the seed axis inside one jit: each seed's
arithmetic is exactly its single-seed arithmetic, so a seed of a K-batch reproduces its
single-seed run bit for bit; the CPU default) or `vmap` (one batched computation: faster on an
accelerator, but batched matrix products sum in another order, so results differ from the
single-seed run by float32 rounding, ~1e-6 after a few updates, and trajectories then drift
apart as any two GPU runs do; the accelerator default). docs/checkpoints.md has the numbers.

Environments (`envs=`): in this process, one after the other, or in a pool of environment
processes that step them in parallel (harness/envpool.py); auto measures the task's step time
and takes whichever is estimated faster. Results are the same either way.

All seeds step in lockstep (same task, same schedule), so they evaluate, log and checkpoint at
the same frames. A seed whose update goes non-finite fails alone (its status says why) and
leaves the batch; the others go on. On resume every seed restarts from the newest frame that
all of them have a checkpoint for.
"""

from __future__ import annotations

import functools
import signal
from dataclasses import replace
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from harness import envpool
from harness.learner import RunFailed
from harness.runner import STOP_SIGNALS, Preempted, Run

BATCHING = ("auto", "map", "vmap")


@functools.lru_cache(maxsize=None)
def _batched(algo, mode: str):
    """(act, update) over stacked states: act(agents, obs (K, 1, O), keys (K, 2), steps (K,))
    -> (K, 1, A); update(agents, blocks (K, k, B, ...)) -> (agents, metrics (K,)), the
    stacked state donated (updated in place, as the single-seed update does)."""
    def act_one(agent, obs, key, step):
        return algo.act(agent, obs, jax.random.fold_in(key, step))

    if mode == "vmap":
        act = jax.vmap(act_one)
        update = jax.vmap(algo.update)
    else:
        def act(agents, obs, keys, steps):
            return jax.lax.map(lambda x: act_one(*x), (agents, obs, keys, steps))

        def update(agents, blocks):
            return jax.lax.map(lambda x: algo.update(*x), (agents, blocks))
    return jax.jit(act), jax.jit(update, donate_argnums=0)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


class MultiRun:
    """`runs`: one `Run` per seed, same agent, task and config (only the seed differs)."""

    def __init__(self, runs: list[Run], batching: str = "auto", envs: str = "auto"):
        if not runs:
            raise ValueError("no runs")
        first = runs[0]
        for r in runs[1:]:
            # lockstep needs one schedule: everything but the seed the same
            if replace(r.cfg, seed=0) != replace(first.cfg, seed=0) or \
                    r.agent_cfg != first.agent_cfg:
                raise ValueError("seeds_per_process packs seeds of one (agent, task, config) "
                                 f"only; {r.cfg.seed} differs from {first.cfg.seed}")
        if batching not in BATCHING:
            raise ValueError(f"unknown batching {batching!r}; valid: {', '.join(BATCHING)}")
        if envs not in envpool.ENVS:
            raise ValueError(f"unknown envs {envs!r}; valid: {', '.join(envpool.ENVS)}")
        if batching == "auto":
            batching = "map" if jax.default_backend() == "cpu" else "vmap"
        self.runs, self.batching, self.envs = list(runs), batching, envs
        self.pool: envpool.EnvPool | None = None
        self.echo = first.echo
        self._stop: int | None = None

    # -- the stacked agent ------------------------------------------------------------------------
    def _stack_agents(self) -> None:
        self.agents = _stack([r.learner.agent for r in self.active])
        self.keys = jnp.stack([r.learner.act_key for r in self.active])

    def _sync_out(self) -> None:
        """Each active run's learner gets its slice of the stacked state (for evaluation,
        stability metrics and checkpoints)."""
        for i, r in enumerate(self.active):
            r.learner.agent = jax.tree.map(lambda x, i=i: x[i], self.agents)

    def _fail(self, run: Run, reason: str) -> None:
        if run.store is not None:
            run.store.set_status("failed", reason, frames_done=run.frames)
            run.store.log(f"failed: {reason}")
            run.store.release()
        self.echo(f"{run.task.name} seed {run.cfg.seed}: failed: {reason}")
        keep = [i for i, r in enumerate(self.active) if r is not run]
        self.active = [self.active[i] for i in keep]
        if self.active:
            self.agents = jax.tree.map(lambda x: x[np.asarray(keep)], self.agents)
            self.keys = self.keys[np.asarray(keep)]

    # -- one lockstep agent step ------------------------------------------------------------------
    def _step(self) -> None:
        act, update = _batched(self.active[0].algo, self.batching)
        runs = self.active
        t0 = time.perf_counter()
        for r in runs:
            r.worker.observe()
        if runs[0].learner.warming_up:
            actions = [r.worker.random_action() for r in runs]
        else:
            obs = np.stack([r.worker.policy_obs(r.worker.obs)[None] for r in runs])
            steps = np.asarray([r.worker.steps for r in runs], np.int32)
            actions = list(np.asarray(act(self.agents, obs, self.keys, steps))[:, 0])
        t1 = time.perf_counter()
        results = envpool.step_all([r.worker.env for r in runs], actions)
        for r, a, result in zip(runs, actions, results):
            r.learner.store_transition(r.worker.took(a, result))
        t2 = time.perf_counter()
        while self.active and self.active[0].learner.update_due:
            # host blocks stacked on the host: one transfer in the call, no K device ops
            blocks = jax.tree.map(lambda *xs: np.stack(xs), *[
                r.learner.next_block(r.worker.normalise) for r in self.active])
            self.agents, metrics = update(self.agents, blocks)
            # one transfer of the K seeds' scalars (the single run syncs on health/finite too)
            host = jax.device_get(metrics)
            for i, r in enumerate(list(self.active)):
                try:
                    r.learner.record_update({k: v[i] for k, v in host.items()}, r.frames)
                except RunFailed as e:
                    self._fail(r, str(e))
        t3 = time.perf_counter()
        for r in self.active:  # the batched parts' wall time, shared by the seeds
            r.timers["act"] += (t1 - t0) / len(runs)
            r.timers["env"] += (t2 - t1) / len(runs)
            r.timers["update"] += (t3 - t2) / len(runs)

    # -- driving ------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._stop = signum

    def run(self) -> dict[int, dict]:
        """Run every seed to the budget (or resume and finish). Returns seed -> last eval of
        the seeds that completed here or before; failed seeds are not in it."""
        out, todo = {}, []
        try:
            for r in self.runs:
                done = r.claim()
                if done is not None:
                    out[r.cfg.seed] = done
                else:
                    todo.append(r)
        except BaseException:  # a held or foreign run: let go of the locks already taken
            for r in self.runs:
                if r.store is not None:
                    r.store.release()
            raise
        self.active = todo
        old = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            if todo:
                self._start_envs()
                self._run()
            for r in self.active:
                out[r.cfg.seed] = r.last_eval
            return out
        except Preempted:
            raise
        except BaseException as e:
            for r in self.active:
                if r.store is not None:
                    r.store.set_status("failed", f"{type(e).__name__}: {e}",
                                       frames_done=r.frames)
                    r.store.log("failed:\n" + traceback.format_exc())
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if self.pool is not None:
                self.pool.close()
                self.pool = None
            for r in self.runs:
                if r.store is not None:
                    r.store.release()

    def _start_envs(self) -> None:
        """Where the seeds' envs live (`envs=`): in this process, or in a pool of
        min(K, cores) processes that step them in parallel (auto measures the task's step
        time and takes the pool where it is estimated faster: harness/envpool.py)."""
        first = self.active[0]
        mode, facts = envpool.choose(first.task, len(self.active), self.envs)
        if mode == "process":
            self.pool = envpool.EnvPool(max(1, min(len(self.active), facts["cores"])))
            for r in self.active:
                r.make_env = self.pool.make
        step = f", {facts['step_s'] * 1e3:.3f} ms per env step" if "step_s" in facts else ""
        where = (f"a pool of {len(self.pool.hosts)} processes" if self.pool is not None
                 else "this process")
        self.echo(f"{first.task.name}: {len(self.active)} seeds step their envs in {where}"
                  f" (envs={self.envs}{step}, {facts['cores']} cores)")

    def _resume(self) -> None:
        """Every seed from the newest frame all of them have a checkpoint for (a kill between
        two seeds' saves leaves some one save ahead), or all from scratch."""
        for r in self.active:
            r._fresh()
            r.prepare_store()
        loaded = [r.recorder.load() for r in self.active]
        if all(x is not None for x in loaded):
            common = min(x[0] for x in loaded)
            loaded = [x if x[0] == common else r.recorder.load(common)
                      for r, x in zip(self.active, loaded)]
        if not all(x is not None for x in loaded) or len({x[0] for x in loaded}) != 1:
            loaded = [None] * len(self.active)
        for r, x in zip(self.active, loaded):
            r.start(x)
        self.resumed = loaded[0] is not None

    def _run(self) -> None:
        self._resume()
        self._stack_agents()
        first = self.active[0]
        if not self.resumed:
            self._sync_out()
        for r in self.active:
            r.progress = r.make_progress()
            if not self.resumed:
                r._evaluate()
        schedule = first.schedule()
        while self.active and self.active[0].steps < first.total_steps:
            self._step()
            if not self.active:
                break
            lead = self.active[0]
            done = lead.steps >= lead.total_steps
            flags = schedule.flags(lead.frames, done)
            if flags["metrics"] or flags["eval"] or flags["checkpoint"] or (
                    self._stop is not None and not done):
                self._sync_out()
            for r in self.active:
                r._after_step(flags, r.progress)
            if self._stop is not None and not done:
                name = signal.Signals(self._stop).name
                for r in self.active:
                    r._stopped(name)
                raise Preempted(name)
            if flags["checkpoint"]:
                for r in self.active:
                    r._checkpoint()
        self._sync_out()
        for r in self.active:
            r.progress.close()
            r.wall, r._since = r.elapsed, time.perf_counter()
            if r.store is not None:
                r._finish()
