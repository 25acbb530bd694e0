"""Benchmarks (scripts, not tests).

`python -m harness.bench update [--json] [sizes=default,small] [seconds=20]`
measures, on this machine, SimbaV2 gradient updates per second for two sizes, with one critic
and with clipped double-Q:
  (a) per_call: the official code's pattern: one jitted update per call, the batch sampled and
      normalised on the host (float64) and copied in each time, metrics pulled to the host after
      each call;
  (b) fused: our k-update scan (k = 2) on a block already on the device;
  (c) a plain large float32 matmul in the same process, the machine's ceiling.
FLOPs per update come from XLA's cost analysis of the *lowered* single update.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from agents import simbav2 as sv
from agents.base import AgentSpec
from agents.normalization import ObservationNormalizer
from harness.cli import UsageError, check_keys, fail, split_kv

SIZES = {
    "default": dict(actor=(128, 1), critic=(512, 2), batch=256, obs=67, act=21),
    "small": dict(actor=(64, 1), critic=(128, 1), batch=256, obs=24, act=6),
}
FUSED_K = 2


def matmul_gflops(n: int = 2048, seconds: float = 3.0) -> float:
    """Best GFLOP/s of an (n x n) @ (n x n) float32 matmul."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(5):
            out = f(a, a)
        out.block_until_ready()
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def _setup(size: dict, episodic: bool):
    cfg = sv.Config(actor=sv.NetworkConfig(*size["actor"]),
                    critic=sv.NetworkConfig(*size["critic"]), batch_size=size["batch"])
    spec = AgentSpec(obs_dim=size["obs"], act_dim=size["act"], discount=0.99,
                     episodic=episodic, total_updates=10**6)
    return cfg, spec


def _host_data(spec: AgentSpec, n: int = 20_000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"obs": rng.normal(size=(n, spec.obs_dim)) * 3 + 1,
            "action": rng.uniform(-1, 1, (n, spec.act_dim)).astype(np.float32),
            "reward": rng.normal(size=n), "next_obs": rng.normal(size=(n, spec.obs_dim)) * 3 + 1,
            "terminated": (rng.random(n) < 0.01).astype(np.float32)}


def _rate(step, state, seconds: float, per_call_updates: int):
    """Run `state = step(state)` for about `seconds` after a warm-up; updates per second."""
    state = step(state)
    jax.block_until_ready(state)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or calls < 3:
        state = step(state)
        calls += 1
    jax.block_until_ready(state)
    return calls * per_call_updates / (time.perf_counter() - t0)


def measure(size: dict, episodic: bool, seconds: float) -> dict:
    cfg, spec = _setup(size, episodic)
    data = _host_data(spec)
    norm = ObservationNormalizer((spec.obs_dim,))
    norm.update(data["obs"])
    rng = np.random.default_rng(1)
    batch = size["batch"]

    def host_batch():
        idx = rng.integers(0, len(data["reward"]), batch)
        return {"obs": norm.normalize(data["obs"][idx]), "action": data["action"][idx],
                "reward": (data["reward"][idx] / 3.0).astype(np.float32),
                "next_obs": norm.normalize(data["next_obs"][idx]),
                "terminated": data["terminated"][idx]}

    # (a) the official per-call pattern
    single = jax.jit(sv._gradient_step, donate_argnums=0)

    def per_call(agent):
        agent, metrics = single(agent, jax.device_put(host_batch()))
        jax.device_get(metrics)
        return agent

    per_call_rate = _rate(per_call, sv.init(cfg, spec, 0), seconds, 1)

    # (b) fused scan over a device-resident (k, batch, ...) block
    block = jax.device_put(jax.tree.map(lambda *xs: np.stack(xs),
                                        *[host_batch() for _ in range(FUSED_K)]))

    def fused(agent):
        return sv.update(agent, block)[0]

    fused_rate = _rate(fused, sv.init(cfg, spec, 0), seconds, FUSED_K)
    one = jax.tree.map(lambda x: x[0], block)
    flops = jax.jit(sv._gradient_step).lower(sv.init(cfg, spec, 0), one).cost_analysis()["flops"]
    return {"updates_per_s_fused": fused_rate, "updates_per_s_per_call": per_call_rate,
            "fused_speedup": fused_rate / per_call_rate, "flops_per_update": float(flops)}


def bench_update(sizes: list[str], seconds: float) -> dict:
    peak = matmul_gflops()
    out: dict = {"matmul_gflops": peak, "device": jax.devices()[0].device_kind,
                 "cpu_count": os.cpu_count(), "jax": jax.__version__,
                 "machine": platform.machine(), "fused_k": FUSED_K}
    for name in sizes:
        res = {}
        for prefix, episodic in (("", False), ("cdq_", True)):
            r = measure(SIZES[name], episodic, seconds)
            r["matmul_peak_fraction"] = (r["updates_per_s_fused"] * r["flops_per_update"]
                                         / 1e9 / peak)
            res.update({prefix + k: v for k, v in r.items()})
        out[name] = res
    out["matmul_gflops_after"] = matmul_gflops()  # drift check: the ceiling, measured again
    return out


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    if not argv or argv[0] != "update":
        fail("usage: python -m harness.bench update [--json] [sizes=default,small] [seconds=20]")
    try:
        kv = split_kv(argv[1:])
        check_keys(kv, {"sizes", "seconds"})
        sizes = kv.get("sizes", "default,small").split(",")
        for s in sizes:
            if s not in SIZES:
                raise UsageError(f"unknown size {s!r}; valid: {', '.join(SIZES)}")
        seconds = float(kv.get("seconds", 20))
    except (UsageError, ValueError) as e:
        fail(str(e))
    res = bench_update(sizes, seconds)
    if as_json:
        print(json.dumps(res))
        return 0
    print(f"matmul ceiling: {res['matmul_gflops']:.0f} GFLOP/s on {res['device']} "
          f"({res['cpu_count']} CPUs), jax {res['jax']}")
    for s in sizes:
        r = res[s]
        for p, label in (("", "one critic"), ("cdq_", "clipped double-Q")):
            print(f"{s:8s} {label:17s} fused {r[p + 'updates_per_s_fused']:8.1f}/s  per-call "
                  f"{r[p + 'updates_per_s_per_call']:8.1f}/s  speedup "
                  f"{r[p + 'fused_speedup']:.2f}x  {r[p + 'flops_per_update'] / 1e9:6.2f} GFLOP/"
                  f"update  {r[p + 'matmul_peak_fraction']:.2f} of matmul peak")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
