"""Benchmarks (scripts, not tests).

`python -m harness.bench loop [--json] [agent=simbav2] [task=cheetah-run] [frames=20000]
[size=small]` measures a real run's frames/s against the raw env and update rates (the loop's
overhead).

`python -m harness.bench update [--json] [agent=simbav2] [sizes=default,small] [seconds=20]`
measures, on this machine, an agent's gradient updates per second (any agent: a registered
name or an import path; only the contract in agents/base.py is used) for two sizes, with one
critic and with clipped double-Q (episodic task; agents that always use twin critics have two
in both):
  (a) per_call: the official SimbaV2 code's pattern: one jitted update per call, the batch
      sampled and normalised on the host (float64) and copied in each time, metrics pulled to
      the host after each call;
  (b) fused: our k-update scan (k = 2) on a block already on the device;
  (c) a plain large float32 matmul in the same process, the machine's ceiling.
FLOPs per update come from XLA's cost analysis of the *lowered* single update
(agents.base.flops_per_update). Sizes: `default` is the agent's default config on a DMC
humanoid-sized task (67 observations, 21 actions); `small` sets actor 64x1 and critic 128x1
(where the agent has those settings) on a 24/6 task.
`matmul_peak_fraction` is the median, over fused calls each timed back to back with one ceiling
matmul, of (update FLOP/s / matmul FLOP/s): on a shared machine whose speed drifts within
seconds, both sides of the ratio are then measured under the same load.
`matmul_peak_fraction_vs_best` (median update rate / best matmul seen) is the pessimistic bound.

`python -m harness.bench multiseed [--json] [agent=simbav2] [task=cheetah-run] [frames=20000]
[ks=1,2,4,8] [sizes=default,small] [batching=auto|map|vmap] [envs=auto|inline|process]` measures K
seeds in one process (`harness.run seeds=`)
against K single-seed processes running at the same time on this machine: total env frames/s
and updates/s of the learning phase (from the runs' metrics rows, so start-up and compilation
are excluded) and peak host memory (max RSS of the launched process, which does not include
its environment processes under `envs=process`) per seed, for each K and size.

`python -m harness.bench envs [--json] [tasks=cheetah-run,Humanoid-v4,dog-stand] [ks=2,4,8]
[steps=300]` measures stepping K environments for one agent step: one after the other in
this process (`envs=inline`) against a pool of min(K, cores) processes (`envs=process`,
harness/envpool.py), seconds per agent step (K env steps, random actions, resets included),
the pool's pipe round trip, and what `envs=auto` picks from its own probe.

`python -m harness.bench checkpoint [--json] [sizes=10000,100000,1000000] [every=100000]
[dir=<a temporary folder>]` measures the replay part of a checkpoint for Humanoid-v4-sized
transitions (376 observations, 17 actions, episodes of 1,000 steps) holding `sizes`
transitions: time and bytes of a periodic save (`every` new transitions since the previous
save, as `checkpoint_every=every` at action repeat 1) and of a resume (read, verify, rebuild),
`before` (the whole buffer, obs and next_obs, in every checkpoint) and `after` (append-only
segments), and the buffer's host bytes in both layouts. `dir=` points it at another filesystem
(a cluster's shared one); resumes read files just written, so they usually hit the page cache.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

os.environ.setdefault("MUJOCO_GL", "disable")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from agents import base as contract  # noqa: E402
from agents.base import AgentSpec  # noqa: E402
from harness.cli import UsageError, check_choice, check_keys, fail, split_kv  # noqa: E402
from harness.config import agent_config_class, flat_fields, override  # noqa: E402

# size -> (settings applied where the agent has them, observation dim, action dim)
SIZES = {
    "default": dict(settings={}, obs=67, act=21),
    "small": dict(settings={"actor.width": 64, "actor.depth": 1, "critic.width": 128,
                            "critic.depth": 1}, obs=24, act=6),
}
FUSED_K = 2


MATMUL_N = 2048


def _matmul():
    """(f, a): a jitted (n x n) @ (n x n) float32 matmul and its operand, the ceiling."""
    a = jax.random.normal(jax.random.PRNGKey(0), (MATMUL_N, MATMUL_N), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return f, a


def _time_matmul(f, a) -> float:
    """GFLOP/s of one call of the ceiling matmul `f(a)`."""
    t = time.perf_counter()
    f(a).block_until_ready()
    return 2 * MATMUL_N**3 / (time.perf_counter() - t) / 1e9


def matmul_gflops(seconds: float = 3.0) -> float:
    """Best GFLOP/s of one (n x n) @ (n x n) float32 matmul over about `seconds`."""
    f, a = _matmul()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        best = max(best, _time_matmul(f, a))
    return best


def sized_config(agent_name: str, size: str):
    """The agent's default config with the size's settings that it has."""
    cfg = agent_config_class(agent_name)()
    have = flat_fields(cfg)
    return override(cfg, {k: v for k, v in SIZES[size]["settings"].items() if k in have})


def _setup(agent_name: str, size: str, episodic: bool):
    cfg = sized_config(agent_name, size)
    spec = AgentSpec(obs_dim=SIZES[size]["obs"], act_dim=SIZES[size]["act"], discount=0.99,
                     episodic=episodic, total_updates=10**6)
    return cfg, spec


def _host_data(spec: AgentSpec, n: int = 20_000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"obs": rng.normal(size=(n, spec.obs_dim)) * 3 + 1,
            "action": rng.uniform(-1, 1, (n, spec.act_dim)).astype(np.float32),
            "reward": rng.normal(size=n), "next_obs": rng.normal(size=(n, spec.obs_dim)) * 3 + 1,
            "terminated": (rng.random(n) < 0.01).astype(np.float32)}


def _rate(step, state, seconds: float, per_call_updates: int):
    """(updates per second of `state = step(state)` over about `seconds`, final state)."""
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or calls < 2:
        state = step(state)
        calls += 1
    jax.block_until_ready(state)
    return calls * per_call_updates / (time.perf_counter() - t0), state


def measure(agent_name: str, size: str, episodic: bool, seconds: float,
            rounds: int = 5) -> dict:
    """Per-call and fused update rates and the fused update's fraction of the matmul ceiling.

    This machine's speed drifts by tens of percent within seconds (shared cores), so the two
    sides of every ratio are measured under the same conditions: each fused call is timed
    back to back with one ceiling matmul, and `matmul_peak_fraction` is the median over these
    pairs of (update FLOP/s / matmul FLOP/s). `matmul_peak_fraction_vs_best` divides the
    median fused rate by the best matmul seen instead: a pessimistic bound, since that best is
    a momentary peak the updates are not timed in. Per-call and fused rates alternate in
    `rounds` rounds; rates are medians over rounds."""
    agent = contract.load_agent(agent_name)
    cfg, spec = _setup(agent_name, size, episodic)
    data = _host_data(spec)
    norm, scaler = contract.normalizers(agent, cfg, spec)
    if norm is not None:
        for o in data["obs"][:2000]:
            norm.update_one(o)
    normalise = (lambda o: norm.normalize(o)) if norm is not None else (
        lambda o: o.astype(np.float32))
    reward_scale = 3.0 if scaler is not None else 1.0
    rng = np.random.default_rng(1)
    batch = cfg.batch_size

    def host_batch():
        idx = rng.integers(0, len(data["reward"]), batch)
        return {"obs": normalise(data["obs"][idx]), "action": data["action"][idx],
                "reward": (data["reward"][idx] / reward_scale).astype(np.float32),
                "next_obs": normalise(data["next_obs"][idx]),
                "terminated": data["terminated"][idx]}

    # (a) the official per-call pattern: one update per call, host batch, metrics to host
    def per_call(state):
        state, metrics = agent.update(state, jax.device_put(
            jax.tree.map(lambda x: x[None], host_batch())))
        jax.device_get(metrics)
        return state

    # (b) fused scan over a device-resident (k, batch, ...) block
    block = jax.device_put(jax.tree.map(lambda *xs: np.stack(xs),
                                        *[host_batch() for _ in range(FUSED_K)]))

    def fused(state):
        return agent.update(state, block)[0]

    flops = contract.flops_per_update(agent, cfg, spec)
    mm, mm_arg = _matmul()
    a_state = per_call(agent.init(cfg, spec, 0))   # compile and warm up
    b_state = fused(agent.init(cfg, spec, 0))
    jax.block_until_ready((a_state, b_state))
    per, fus, ratios, mm_rates = [], [], [], []
    for _ in range(rounds):
        r_a, a_state = _rate(per_call, a_state, seconds / rounds / 2, 1)
        per.append(r_a)
        t_fused, n_pairs, end = 0.0, 0, time.perf_counter() + seconds / rounds / 2
        while time.perf_counter() < end or n_pairs < 2:
            t = time.perf_counter()
            b_state = fused(b_state)
            jax.block_until_ready(b_state)
            t_update = time.perf_counter() - t
            mm_gflops = _time_matmul(mm, mm_arg)
            ratios.append(FUSED_K * flops / 1e9 / t_update / mm_gflops)
            mm_rates.append(mm_gflops)
            t_fused += t_update
            n_pairs += 1
        fus.append(n_pairs * FUSED_K / t_fused)
    med = lambda xs: float(np.median(xs))  # noqa: E731
    return {"critic_heads": contract.critic_heads(agent, cfg, spec),
            "updates_per_s_fused": med(fus), "updates_per_s_per_call": med(per),
            "fused_speedup": med(np.asarray(fus) / np.asarray(per)),
            "flops_per_update": flops, "matmul_peak_fraction": med(ratios),
            "matmul_peak_fraction_vs_best": med(fus) * flops / 1e9 / max(mm_rates),
            "matmul_gflops_paired": {"median": round(med(mm_rates), 1),
                                     "best": round(max(mm_rates), 1), "pairs": len(ratios)}}


def bench_update(agent_name: str, sizes: list[str], seconds: float) -> dict:
    peak = matmul_gflops()
    out: dict = {"agent": agent_name, "matmul_gflops": peak,
                 "device": jax.devices()[0].device_kind,
                 "cpu_count": os.cpu_count(), "jax": jax.__version__,
                 "machine": platform.machine(), "fused_k": FUSED_K, "sizes": list(sizes)}
    for name in sizes:
        res = {}
        for prefix, episodic in (("", False), ("cdq_", True)):
            r = measure(agent_name, name, episodic, seconds)
            res.update({prefix + k: v for k, v in r.items()})
        out[name] = res
    return out


def bench_loop(agent_name: str, task_name: str, frames: int, size: str) -> dict:
    """frames/s of a real run (learning phase, evaluation excluded) against the raw env step
    rate and the raw fused-update rate; overhead = 1 - run rate / (1 / (1/env + upf/update))."""
    from harness.config import RunConfig
    from harness.runner import Run
    from suites import get_task, make_env

    task = get_task(task_name)
    agent = contract.load_agent(agent_name)
    agent_cfg = sized_config(agent_name, size)
    env = make_env(task, 0)
    env.reset()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (5000, task.act_dim))
    n = 0
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, info = env.step(a)
        n += info["frames"]
        if term or trunc:
            env.reset()
    env_fps = n / (time.perf_counter() - t0)
    warmup = 1000
    run = Run(RunConfig(task=task.name, agent=agent_name, frames=frames, warmup_steps=warmup,
                        eval_every=10**9, eval_episodes=1, metrics_every=-1,
                        checkpoint_every=0, log_every=10**9, progress="none"), agent_cfg)
    spec = run.spec
    k = run.k
    block = jax.device_put(jax.tree.map(lambda *xs: np.stack(xs), *[
        {key: v.astype(np.float32) if v.dtype == np.float64 else v
         for key, v in _host_data(spec, 512).items()} for _ in range(k)]))
    block = jax.tree.map(lambda x: x[:, :agent_cfg.batch_size], block)
    warm = agent.update(agent.init(agent_cfg, spec, 0), block)[0]
    update_rate = _rate(lambda a: agent.update(a, block)[0], warm, 10.0, k)[0]
    run.run()
    t = run.timers
    learn_frames = run.frames - warmup * task.action_repeat
    # time of the learning phase: total minus evaluation minus the warm-up (env + act only)
    warm_s = warmup * task.action_repeat / env_fps
    run_s = run.wall - t["eval"] - warm_s
    run_fps = learn_frames / run_s
    ideal = 1.0 / (1.0 / env_fps + agent_cfg.frame_update_rate / update_rate)
    return {"agent": agent_name, "task": task.name, "size": size, "update_block": k, "env_frames_per_s": env_fps,
            "updates_per_s_raw": update_rate, "run_frames_per_s": run_fps,
            "ideal_frames_per_s": ideal, "overhead": 1.0 - run_fps / ideal,
            "seconds": {k2: round(v, 2) for k2, v in t.items()} | {"wall": round(run.wall, 2)}}


HUMANOID = dict(obs=376, act=17, episode=1000)


def _filled_replay(n: int, capacity: int):
    """A ReplayBuffer of Humanoid-v4 sized transitions holding n of them (random data,
    episodes of 1,000 steps), filled directly (no per-step Python loop)."""
    from harness.replay import ReplayBuffer
    h = HUMANOID
    rb = ReplayBuffer(capacity, h["obs"], h["act"])
    t = np.arange(n)
    rows = n + -(-n // h["episode"])
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100_000):  # chunks: no second full-size temporary
        stop = min(rows, start + 100_000)
        rb.obs[start:stop] = rng.standard_normal((stop - start, h["obs"]), np.float32)
    rb.step["obs_ref"][:n] = t + t // h["episode"]
    rb.step["action"][:n] = rng.uniform(-1, 1, (n, h["act"])).astype(np.float32)
    rb.step["reward"][:n] = rng.standard_normal(n)
    rb.step["terminated"][:n] = 0.0
    rb.added, rb.rows, rb.open = n, rows, n % h["episode"] != 0
    return rb


def _dir_bytes(path) -> int:
    from pathlib import Path
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def bench_checkpoint(sizes: list[int], every: int, root: str | None) -> dict:
    """Replay checkpoint cost before/after append-only segments (module docstring)."""
    import shutil
    import tempfile
    from pathlib import Path

    from harness import checkpoint
    from harness.replay import FIELDS, ReplayBuffer

    base = Path(tempfile.mkdtemp(prefix="simbabench-ckpt-", dir=root))
    out = {"device": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "dir": str(base), "transition": HUMANOID, "every": every, "sizes": {}}
    try:
        for n in sizes:
            capacity = max(sizes)
            delta = min(every, n)
            # before: the whole buffer (obs and next_obs per slot) in every checkpoint
            rb = _filled_replay(n, capacity)
            old = {f"replay/{f}": v for f, v in rb.gather(np.arange(n)).items()}
            old_bytes_mem = sum(v.nbytes for v in old.values())
            d_old = base / f"before_{n}"
            t0 = time.perf_counter()
            path = checkpoint.save(d_old, n, old, {"replay": {"size": n, "pos": n % capacity,
                                                              "capacity": capacity}})
            save_old = time.perf_counter() - t0
            bytes_old = _dir_bytes(path)
            del old
            t0 = time.perf_counter()
            _, arrays, meta, _ = checkpoint.load_latest(d_old)
            fresh = {}  # what the old buffer did: copy each field into its preallocated ring
            for name, v in arrays.items():
                fresh[name] = np.empty((capacity, *v.shape[1:]), v.dtype)
                fresh[name][:n] = v
            resume_old = time.perf_counter() - t0
            arrays = fresh = None
            shutil.rmtree(d_old)
            # after: segments; the previous save holds the first n - delta transitions
            d_new = base / f"after_{n}"
            full = rb.added, rb.rows
            rb.added = n - delta
            rb.rows = int(rb.step["obs_ref"][rb.added - 1]) + 2 if rb.added else 0
            rb.open = rb.added % HUMANOID["episode"] != 0
            if rb.added:
                rb.commit_segment(checkpoint.write_segment(d_new, *rb.pending_segment()))
                checkpoint.save(d_new, rb.added, {}, {"replay": rb.state_meta()},
                                segments=rb.segments)
            before_disk = _dir_bytes(d_new) if d_new.exists() else 0
            rb.added, rb.rows = full
            rb.open = n % HUMANOID["episode"] != 0
            t0 = time.perf_counter()
            rb.commit_segment(checkpoint.write_segment(d_new, *rb.pending_segment()))
            checkpoint.save(d_new, n, {}, {"replay": rb.state_meta()}, segments=rb.segments)
            save_new = time.perf_counter() - t0
            bytes_new = _dir_bytes(d_new) - before_disk
            t0 = time.perf_counter()
            _, arrays, meta, _ = checkpoint.load_latest(d_new)
            fresh = ReplayBuffer(capacity, HUMANOID["obs"], HUMANOID["act"])
            fresh.load(meta["replay"], lambda rec: checkpoint.segment_arrays(arrays, rec))
            resume_new = time.perf_counter() - t0
            idx = np.random.default_rng(1).integers(0, n, 256)
            same = all(np.array_equal(fresh.gather(idx)[f], rb.gather(idx)[f]) for f in FIELDS)
            used_rows = rb.rows
            out["sizes"][str(n)] = {
                "before": {"save_s": save_old, "save_bytes": bytes_old, "resume_s": resume_old,
                           "host_bytes": old_bytes_mem},
                "after": {"save_s": save_new, "save_bytes": bytes_new, "resume_s": resume_new,
                          "host_bytes": used_rows * HUMANOID["obs"] * 4 + sum(
                              v[:n].nbytes for v in rb.step.values()),
                          "new_transitions": delta, "resume_exact": bool(same)},
            }
            arrays = fresh = rb = None  # free before the next size
            shutil.rmtree(d_new)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def _learning_rates(run_dir) -> tuple[float, float]:
    """(frames/s, updates/s) of one run between its first metrics row with updates and its
    last (start-up, compilation and warm-up excluded)."""
    import pandas as pd

    m = pd.read_parquet(run_dir / "metrics.parquet")
    m = m.loc[m["updates"] > 0]
    if len(m) < 2:
        raise RuntimeError(f"{run_dir}: too few metrics rows to time; raise frames=")
    a, b = m.iloc[0], m.iloc[-1]
    dt = float(b["time/wall_s"] - a["time/wall_s"])
    return float(b["frames"] - a["frames"]) / dt, float(b["updates"] - a["updates"]) / dt


def bench_envs(task_names: list[str], ks: list[int], steps: int) -> dict:
    """Seconds per agent step of K envs, in this process vs in a pool (module docstring)."""
    from harness import envpool
    from suites import get_task, make_env

    cores = envpool.usable_cores()
    out = {"cores": cores, "steps": steps, "tasks": {}}

    def per_step(envs, task) -> float:
        rng = np.random.default_rng(0)
        for e in envs:
            e.reset()
        t0 = time.perf_counter()
        for _ in range(steps):
            actions = rng.uniform(-1, 1, (len(envs), task.act_dim)).astype(np.float32)
            for e, (_, _, term, trunc, _) in zip(envs, envpool.step_all(envs, actions)):
                if term or trunc:
                    e.reset()
        return (time.perf_counter() - t0) / steps

    for name in task_names:
        task = get_task(name)
        probe = envpool.probe_step_seconds(task)
        rows = {}
        for k in ks:
            inline = per_step([make_env(task, s) for s in range(k)], task)
            with envpool.EnvPool(max(1, min(k, cores))) as pool:
                remote = [pool.make(task, s) for s in range(k)]
                t0 = time.perf_counter()
                for _ in range(200):
                    remote[0].episode
                round_trip = (time.perf_counter() - t0) / 200
                pooled = per_step(remote, task)
            pick, facts = envpool.choose(task, k, "auto", cores=cores, step_s=probe)
            best = "process" if pooled < inline else "inline"
            rows[str(k)] = {"inline_s": inline, "process_s": pooled,
                            "speedup": inline / pooled, "round_trip_s": round_trip,
                            "auto": pick, "fastest": best}
        out["tasks"][name] = {"probe_step_s": probe, "ks": rows}
    return out


def bench_multiseed(agent_name: str, task_name: str, frames: int, ks: list[int],
                    sizes: list[str], batching: str = "auto", envs: str = "auto") -> dict:
    """K seeds per process vs K concurrent single-seed processes (module docstring)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from harness.config import valid_keys
    from suites import get_task

    task = get_task(task_name)
    keys = valid_keys(agent_name)
    out = {"agent": agent_name, "task": task.name, "frames": frames, "batching": batching,
           "envs": envs, "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="simbabench-multiseed-") as tmp:
        for size in sizes:
            settings = [f"{k}={v}" for k, v in SIZES[size]["settings"].items() if k in keys]
            common = [f"task={task.name}", f"agent={agent_name}", f"frames={frames}",
                      f"warmup_steps={max(256, frames // 10 // task.action_repeat)}",
                      f"eval_every={frames}", "eval_episodes=1", "metrics_every=-1",
                      "checkpoint_every=0", f"log_every={max(1, frames // 20)}",
                      "progress=none", *settings]
            res = {}
            for k in ks:
                def launch(exp: str, seed_args: list[str]) -> subprocess.Popen:
                    return subprocess.Popen(
                        [sys.executable, "-m", "harness.run", *common, f"root={tmp}",
                         f"exp={exp}", *seed_args], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)

                def wait_rss(p) -> float:
                    _, code, usage = os.wait4(p.pid, 0)
                    p.returncode = code
                    if code != 0:
                        raise RuntimeError(f"a benchmark run failed (wait status {code})")
                    return usage.ru_maxrss * 1024.0  # KB on Linux

                def totals(exp: str, rss_per_seed: float) -> dict:
                    rates = [_learning_rates(Path(tmp) / exp / task.name / f"seed_{s}")
                             for s in range(k)]
                    return {"frames_per_s": sum(r[0] for r in rates),
                            "updates_per_s": sum(r[1] for r in rates),
                            "peak_rss_bytes_per_seed": rss_per_seed}

                batched = f"{size}-k{k}-batched"
                rss = wait_rss(launch(batched, [f"seeds=0-{k - 1}", f"batching={batching}",
                                                   f"envs={envs}"]))
                row = {"one_process": totals(batched, rss / k)}
                separate = f"{size}-k{k}-separate"
                procs = [launch(separate, [f"seed={s}"]) for s in range(k)]
                row["k_processes"] = totals(separate, float(np.mean([wait_rss(p)
                                                                     for p in procs])))
                row["speedup"] = (row["one_process"]["frames_per_s"]
                                  / row["k_processes"]["frames_per_s"])
                res[str(k)] = row
            out["sizes"][size] = res
    return out


def _sizes(key: str, text: str) -> list[str]:
    """A comma list of agent sizes, each checked."""
    return [check_choice(key, x, SIZES) for x in text.split(",")]


def _positive(key: str, text: str, cast=int) -> list:
    """A comma list of positive numbers (1e6 and 1_000_000 accepted for counts)."""
    values = [cast(float(x)) if cast is int else cast(x) for x in text.split(",")]
    if min(values) <= 0:
        raise UsageError(f"{key} must be positive")
    return values


def _parse_multiseed(kv: dict) -> dict:
    from harness.envpool import ENVS
    from harness.multirun import BATCHING

    agent_config_class(kv.get("agent", "simbav2"))
    return {"agent_name": kv.get("agent", "simbav2"), "task_name": kv.get("task", "cheetah-run"),
            "frames": _positive("frames", kv.get("frames", "20000"))[0],
            "ks": _positive("ks", kv.get("ks", "1,2,4,8")),
            "sizes": _sizes("sizes", kv.get("sizes", "default,small")),
            "batching": check_choice("batching", kv.get("batching", "auto"), BATCHING),
            "envs": check_choice("envs", kv.get("envs", "auto"), ENVS)}


def _show_multiseed(res: dict) -> None:
    print(f"{res['agent']} on {res['task']}, {res['frames']} frames per seed, {res['device']} "
          f"({res['cpu_count']} CPUs): K seeds in one process vs K processes")
    for size, rows in res["sizes"].items():
        for k, r in rows.items():
            a, b = r["one_process"], r["k_processes"]
            print(f"{size:8s} K={k:>2s}  one process {a['frames_per_s']:8.1f} frames/s "
                  f"{a['updates_per_s']:8.1f} upd/s {a['peak_rss_bytes_per_seed'] / 1e6:6.0f} "
                  f"MB/seed | {k} processes {b['frames_per_s']:8.1f} frames/s "
                  f"{b['updates_per_s']:8.1f} upd/s {b['peak_rss_bytes_per_seed'] / 1e6:6.0f}"
                  f" MB/seed | speedup {r['speedup']:.2f}x")


def _parse_envs(kv: dict) -> dict:
    from suites import get_task

    tasks = kv.get("tasks", "cheetah-run,Humanoid-v4,dog-stand").split(",")
    for t in tasks:
        get_task(t)
    return {"task_names": tasks, "ks": _positive("ks", kv.get("ks", "2,4,8")),
            "steps": _positive("steps", kv.get("steps", "300"))[0]}


def _show_envs(res: dict) -> None:
    print(f"K envs per agent step, {res['steps']} steps, {res['cores']} usable cores")
    for name, r in res["tasks"].items():
        for k, row in r["ks"].items():
            print(f"{name:18s} step {r['probe_step_s'] * 1e3:6.3f} ms  K={k:>2s}  in process "
                  f"{row['inline_s'] * 1e3:7.3f} ms  pool {row['process_s'] * 1e3:7.3f} ms "
                  f"({row['speedup']:.2f}x, round trip {row['round_trip_s'] * 1e6:5.1f} us)"
                  f"  auto: {row['auto']}, fastest: {row['fastest']}")


def _parse_checkpoint(kv: dict) -> dict:
    return {"sizes": _positive("sizes", kv.get("sizes", "10000,100000,1000000")),
            "every": _positive("every", kv.get("every", "100000"))[0], "root": kv.get("dir")}


def _show_checkpoint(res: dict) -> None:
    print(f"replay checkpoint, Humanoid-v4 transitions, {res['every']} new per save, "
          f"in {res['dir']}")
    for n, r in res["sizes"].items():
        b, a = r["before"], r["after"]
        print(f"{int(n):>9,d} transitions  save {b['save_s']:7.2f} s {b['save_bytes'] / 1e6:8.0f} MB"
              f" -> {a['save_s']:6.2f} s {a['save_bytes'] / 1e6:7.0f} MB   resume "
              f"{b['resume_s']:6.2f} s -> {a['resume_s']:6.2f} s   host "
              f"{b['host_bytes'] / 1e6:7.0f} MB -> {a['host_bytes'] / 1e6:7.0f} MB")


def _parse_loop(kv: dict) -> dict:
    agent_config_class(kv.get("agent", "simbav2"))
    return {"agent_name": kv.get("agent", "simbav2"), "task_name": kv.get("task", "cheetah-run"),
            "frames": _positive("frames", kv.get("frames", "20000"))[0],
            "size": _sizes("size", kv.get("size", "small"))[0]}


def _parse_update(kv: dict) -> dict:
    agent_config_class(kv.get("agent", "simbav2"))
    return {"agent_name": kv.get("agent", "simbav2"),
            "sizes": _sizes("sizes", kv.get("sizes", "default,small")),
            "seconds": _positive("seconds", kv.get("seconds", "20"), float)[0]}


def _show_update(res: dict) -> None:
    print(f"{res['agent']}: matmul ceiling {res['matmul_gflops']:.0f} GFLOP/s on {res['device']} "
          f"({res['cpu_count']} CPUs), jax {res['jax']}")
    for s in res["sizes"]:
        r = res[s]
        for p in ("", "cdq_"):
            label = "one critic" if r[p + "critic_heads"] == 1 else f"{r[p + 'critic_heads']} critics"
            print(f"{s:8s} {label:11s} fused {r[p + 'updates_per_s_fused']:8.1f}/s  per-call "
                  f"{r[p + 'updates_per_s_per_call']:8.1f}/s  speedup "
                  f"{r[p + 'fused_speedup']:.2f}x  {r[p + 'flops_per_update'] / 1e9:6.2f} GFLOP/"
                  f"update  {r[p + 'matmul_peak_fraction']:.2f} of matmul peak")


# name -> (keys with their defaults as shown in the usage, parse(kv) -> kwargs, benchmark,
# text report); --json prints the benchmark's dict instead of the report
COMMANDS = {
    "update": ("[agent=simbav2] [sizes=default,small] [seconds=20]", _parse_update,
               bench_update, _show_update),
    "loop": ("[agent=simbav2] [task=cheetah-run] [frames=20000] [size=small]", _parse_loop,
             bench_loop, lambda res: print(json.dumps(res, indent=1))),
    "multiseed": ("[agent=simbav2] [task=cheetah-run] [frames=20000] [ks=1,2,4,8] "
                  "[sizes=default,small] [batching=auto] [envs=auto]", _parse_multiseed,
                  bench_multiseed, _show_multiseed),
    "envs": ("[tasks=cheetah-run,Humanoid-v4,dog-stand] [ks=2,4,8] [steps=300]", _parse_envs,
             bench_envs, _show_envs),
    "checkpoint": ("[sizes=10000,100000,1000000] [every=100000] [dir=...]", _parse_checkpoint,
                   bench_checkpoint, _show_checkpoint),
}


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    if not argv or argv[0] not in COMMANDS:
        fail("usage: " + "\n       ".join(f"python -m harness.bench {name} [--json] {keys}"
                                          for name, (keys, *_) in COMMANDS.items()))
    keys, parse, bench, show = COMMANDS[argv[0]]
    try:
        kv = split_kv(argv[1:])
        check_keys(kv, {k.strip("[").split("=")[0] for k in keys.split()})
        kwargs = parse(kv)
    except (UsageError, ValueError, LookupError) as e:
        fail(str(e))
    res = bench(**kwargs)
    if as_json:
        print(json.dumps(res))
    else:
        show(res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
