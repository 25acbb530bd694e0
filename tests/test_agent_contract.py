"""Every registered agent, and an agent given by import path, through the same checks: the
contract's parts and help lines, compile-once updates with no retrace on new data, and a
short real run that is SIGKILLed and resumed to the same evaluation rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from agents import base
from agents.base import AGENTS, AgentSpec, load_agent
from harness.config import apply_overrides, flat_fields

TESTS = Path(__file__).resolve().parent
PATH_AGENT = "tiny_agent:TinyDDPG"     # tests/tiny_agent.py, importable with tests/ on the path
ALL = [*AGENTS, PATH_AGENT]
# small sizes: each key is applied where the agent has it
SMALL = {"actor.width": "16", "actor.depth": "1", "critic.width": "32", "critic.depth": "1",
         "width": "32", "batch_size": "32"}


@pytest.fixture(autouse=True, scope="module")
def _tests_on_path():
    sys.path.insert(0, str(TESTS))
    yield
    sys.path.remove(str(TESTS))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    return env


def _small(name: str) -> list[str]:
    have = flat_fields(load_agent(name).Config())
    return [f"{k}={v}" for k, v in SMALL.items() if k in have]


def _small_config(name: str):
    cfg = load_agent(name).Config()
    have = flat_fields(cfg)
    return apply_overrides(cfg, {k: v for k, v in SMALL.items() if k in have})


def _block(spec: AgentSpec, k: int, batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    f = np.float32
    return {"obs": rng.normal(size=(k, batch, spec.obs_dim)).astype(f),
            "action": rng.uniform(-1, 1, (k, batch, spec.act_dim)).astype(f),
            "reward": rng.normal(size=(k, batch)).astype(f),
            "next_obs": rng.normal(size=(k, batch, spec.obs_dim)).astype(f),
            "terminated": (rng.random((k, batch)) < 0.1).astype(f)}


class _Compiles:
    """Counts XLA backend compilations while active (any jitted function)."""

    def __init__(self):
        self.n = 0
        self.on = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kw):
        if self.on and event == "/jax/core/compile/backend_compile_duration":
            self.n += 1


COMPILES = _Compiles()


@pytest.mark.parametrize("name", ALL)
def test_contract_parts_help_lines_and_scale_facts(name):
    agent = load_agent(name)
    cfg = agent.Config()
    assert isinstance(cfg, base.BaseConfig) and cfg.frame_update_rate > 0
    # every setting has a help line (what --help prints)
    missing = [k for k, _, text in base.config_help(cfg) if not text]
    assert not missing, f"settings without a help line: {missing}"
    spec = AgentSpec(obs_dim=5, act_dim=2, discount=0.99, episodic=True, total_updates=100)
    small = _small_config(name)
    facts = base.scale_facts(agent, small, spec)
    assert facts["params"]["actor"] > 0 and facts["params"]["critic"] > 0
    assert facts["params"]["total"] == sum(v for k, v in facts["params"].items()
                                           if k not in ("total", "critic_per_head"))
    assert np.isfinite(facts["flops_per_update"]) and facts["flops_per_update"] > 0
    assert facts["width"] == 32 and facts["updates_per_frame"] == small.frame_update_rate
    # a wider critic has more parameters and more FLOPs: the facts follow the config
    wide = apply_overrides(small, {"width" if "width" in flat_fields(small)
                                   else "critic.width": "64"})
    wide_facts = base.scale_facts(agent, wide, spec)
    assert wide_facts["params"]["critic"] > facts["params"]["critic"]
    assert wide_facts["flops_per_update"] > facts["flops_per_update"]


@pytest.mark.parametrize("name", ALL)
def test_update_compiles_once_and_never_retraces_on_new_data(name):
    agent = load_agent(name)
    cfg = _small_config(name)
    spec = AgentSpec(obs_dim=5, act_dim=2, discount=0.99, episodic=True, total_updates=100)
    state = agent.init(cfg, spec, 0)
    key = jax.random.PRNGKey(0)
    obs = np.zeros((1, spec.obs_dim), np.float32)
    state, m = agent.update(state, _block(spec, 2, cfg.batch_size, 0))   # compiles
    assert "health/finite" in m and bool(m["health/finite"])
    assert all(np.ndim(v) == 0 for v in m.values())
    jax.block_until_ready(agent.act(state, obs, key))
    jax.block_until_ready(agent.act(state, obs, key, deterministic=True))
    keys = [jax.random.fold_in(key, i) for i in range(3)]
    blocks = [_block(spec, 2, cfg.batch_size, i + 1) for i in range(3)]
    COMPILES.on, COMPILES.n = True, 0
    try:
        for i in range(3):
            state, m = agent.update(state, blocks[i])
            a = agent.act(state, obs + i, keys[i])
            d = agent.act(state, obs + i, key, deterministic=True)
        jax.block_until_ready((state, m, a, d))
    finally:
        COMPILES.on = False
    assert COMPILES.n == 0, f"{COMPILES.n} recompilation(s) on new data of the same shapes"
    assert a.shape == (1, spec.act_dim) and float(np.abs(a).max()) <= 1.0
    assert all(np.isfinite(float(v)) for v in m.values())


def _cmd(name: str, root: Path) -> list[str]:
    return [sys.executable, "-m", "harness.run", "task=cartpole-balance", f"agent={name}",
            "frames=1200", "warmup_steps=200", "eval_every=400", "eval_episodes=1",
            "log_every=400", "metrics_every=800", "checkpoint_every=200", "progress=lines",
            f"root={root}", "exp=c", *_small(name)]


def _run_dir(root: Path) -> Path:
    return root / "c" / "cartpole-balance" / "seed_0"


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_real_run_sigkill_and_exact_resume(name, tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    p = subprocess.run(_cmd(name, ref), capture_output=True, text=True, timeout=600,
                       env=_env())
    assert p.returncode == 0, p.stderr[-3000:]
    d = _run_dir(ref)
    config = json.loads((d / "config.json").read_text())
    assert config["agent"]["name"] == name and config["agent"]["label"] == base.agent_label(name)
    scale = config["scale"]
    assert scale["width"] == 32 and scale["params"]["total"] > 0
    assert scale["flops_per_update"] > 0 and scale["updates_per_frame"] > 0
    ev = pd.read_csv(d / "eval.csv")
    assert ev["env_step"].tolist() == [0, 400, 800, 1200]
    m = pd.read_parquet(d / "metrics.parquet")
    assert m["critic/loss"].notna().all() and np.isfinite(m["critic/loss"]).all()

    proc = subprocess.Popen(_cmd(name, killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    ck = _run_dir(killed) / "checkpoints"
    end = time.time() + 300
    while not any(int(c.name.split("_")[1]) >= 600 for c in ck.glob("ckpt_*")):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < end, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    p = subprocess.run(_cmd(name, killed), capture_output=True, text=True, timeout=600,
                       env=_env())
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from ckpt_" in p.stderr
    assert (_run_dir(killed) / "eval.csv").read_bytes() == (d / "eval.csv").read_bytes()


def test_agent_by_path_errors_are_clear():
    with pytest.raises(base.AgentError, match="cannot import agent module 'no_such_pkg.mod'"):
        load_agent("no_such_pkg.mod:Agent")
    with pytest.raises(base.AgentError, match="has no attribute 'Nope'"):
        load_agent("tiny_agent:Nope")
    with pytest.raises(base.AgentError, match="lacks .*networks"):
        load_agent("tiny_agent:MLP")
    with pytest.raises(base.AgentError, match="simbav2, sac, simba, crossq"):
        load_agent("simbav3")
    assert base.agent_label(PATH_AGENT) == "TinyDDPG" and base.agent_label("sac") == "sac"
