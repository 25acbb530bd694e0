"""Every setting is checked before anything runs: declared ranges (one mechanism for run,
agent and launch settings), output paths, plan size, integer forms, and `--help` everywhere.
Bad input exits 2 with one `error: ...` line naming the setting, and writes nothing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.base import AGENTS, Valid, load_agent
from harness.cli import UsageError
from harness.config import RunConfig, build, flat_fields, parse_value
from harness.plan import LAUNCH_VALID, MAX_RUNS, build_plan

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
TINY = "tiny_agent:TinyDDPG"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _main(module: str, args: list[str], capsys) -> tuple[int, str, str]:
    """Call a CLI's main in-process: (exit code, stdout, stderr)."""
    import importlib

    main = importlib.import_module(module).main
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _rejected(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err   # one line, no traceback
    for n in needles:
        assert n in err, err


# -- the cases from the issue, through the real entry points ---------------------------------

RUN_CASES = [
    (["critic.width=0"], "bad value 0 for critic.width: must be in [1,"),
    (["batch_size=0"], "bad value 0 for batch_size"),
    (["critic.depth=0"], "critic.depth"),
    (["actor.width=-3"], "bad value -3 for actor.width"),
    (["num_atoms=1"], "bad value 1 for num_atoms"),
    (["tau=2"], "bad value 2.0 for tau: must be in (0, 1]"),
    (["tau=-1"], "for tau"),
    (["lr_init=-1"], "bad value -1.0 for lr_init: must be > 0"),
    (["eval_every=-1"], "bad value -1 for eval_every: must be >= 0"),
    (["g_max=0"], "bad value 0.0 for g_max: must be > 0"),
    (["buffer_size=10"], "bad value 10 for buffer_size: must be >= 1000"),
    (["buffer_size=2000"], "must be >= warmup_steps (5000)"),
    (["buffer_size=1000", "warmup_steps=0", "batch_size=2048"], "must be >= batch_size (2048)"),
    (["temperature_init=0"], "for temperature_init: must be > 0"),
    (["update_block=-1"], "for update_block"),
    (["checkpoint_every=-1"], "for checkpoint_every: must be >= 0"),
    (["metrics_every=-2"], "for metrics_every: must be >= -1"),
    (["log_every=0"], "for log_every: must be >= 1"),
    (["seed=-1"], "bad value -1 for seed: must be in [0,"),
    (["log_std_min=3"], "bad value 3.0 for log_std_min: must be < log_std_max (2.0)"),
    (["tau=nan"], "for tau"),
    (["lr_init=inf"], "finite"),
    (["frames=1.5k7"], "bad value '1.5k7' for frames: expected int"),
    (["exp=../x"], "for exp"),
    (["agent=sac", "critic.width=0"], "critic.width"),
    (["agent=crossq", "brn_momentum=1"], "brn_momentum"),
    (["agent=simba", "weight_decay=-1"], "weight_decay"),
    (["agent=" + TINY, "tau=0"], "bad value 0.0 for tau"),
]


@pytest.mark.parametrize("args,needle", RUN_CASES)
def test_run_rejects_bad_settings_and_writes_nothing(tmp_path, capsys, args, needle):
    root = tmp_path / "runs"
    code, _, err = _main("harness.run", ["task=cartpole-balance", f"root={root}", *args], capsys)
    _rejected(code, err, needle)
    assert not root.exists() and not any(tmp_path.iterdir())


@pytest.mark.parametrize("args,needle", [
    (["critic.width=0"], "bad value 0 for critic.width"),
    (["actor.width=-3"], "actor.width"),
    (["tau=2"], "tau"),
    (["eval_every=-5"], "eval_every"),
    (["update_block=-1"], "update_block"),
    (["checkpoint_every=-1"], "checkpoint_every"),
    (["buffer_size=10"], "buffer_size"),
    (["critic.width=64,0"], "bad value 0 for critic.width"),
    (["agent=sac,crossq", "critic.width=0,64"], "critic.width"),
    (["workers=0"], "bad value 0 for workers: must be in [1,"),
    (["seeds=0-1000000"], f"at most {MAX_RUNS:,} runs per launch"),
    (["seeds=0-9999", "critic.width=64,128"], "the plan has 20,000 runs"),
    (["seeds=2147483647-2147483648"], "seeds must be in [0,"),
    (["backend=slurm", "mem_gb=0"], "bad value 0.0 for mem_gb: must be > 0"),
])
def test_launch_rejects_bad_settings_and_writes_nothing(tmp_path, capsys, args, needle):
    root = tmp_path / "runs"
    code, _, err = _main("harness.launch", ["task=cartpole-balance", "dry_run=true",
                                            f"root={root}", *args], capsys)
    _rejected(code, err, needle)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("module", ["harness.run", "harness.launch"])
def test_unwritable_roots_are_rejected(tmp_path, capsys, module):
    afile = tmp_path / "afile"
    afile.write_text("x")
    extra = ["dry_run=true"] if module == "harness.launch" else []
    for root, needle in [("/proc/x", "cannot write under"), (afile, "is an existing file"),
                         (afile / "sub", "lies under the file")]:
        code, _, err = _main(module, ["task=cartpole-balance", f"root={root}", *extra], capsys)
        _rejected(code, err, "for root", needle)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_run_requires_task(tmp_path, capsys):
    code, _, err = _main("harness.run", [f"root={tmp_path / 'r'}"], capsys)
    _rejected(code, err, "task= is required")
    assert not any(tmp_path.iterdir())


def test_suites_check_rejects_bad_steps_and_seed(capsys):
    for args, needle in [(["steps=-3"], "bad value -3 for steps"), (["steps=0"], "steps"),
                         (["seed=-1"], "bad value -1 for seed"), (["steps=x"], "steps")]:
        code, _, err = _main("suites.__main__", ["check", *args], capsys)
        _rejected(code, err, needle)


def test_make_figures_bad_csv_and_existing_out(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("exp_name,env_name,seed,metric,env_step,value\n"
                   "a,cartpole-balance,x,avg_return,y,z\n")
    code, _, err = _main("analysis.make_figures", [f"results={bad}", f"out={tmp_path / 'o'}"],
                         capsys)
    _rejected(code, err, "bad.csv", "non-numeric")
    assert not (tmp_path / "o").exists()
    # out= is checked before anything is loaded (the results path does not even exist)
    code, _, err = _main("analysis.make_figures",
                         [f"results={tmp_path / 'missing'}", f"out={bad}"], capsys)
    _rejected(code, err, "for out", "is an existing file")


# -- one form for integers: run, launch (and make_figures) agree ------------------------------

@pytest.mark.parametrize("text", ["1M", "1m", "1000k", "1e6", "1_000_000", "1000000", "1.0M"])
def test_integer_forms(tmp_path, text):
    assert parse_value("frames", text, int) == 1_000_000
    run_cfg, _ = build({"task": "cartpole-balance", "frames": text, "eval_every": "50k",
                        "root": str(tmp_path)})
    assert (run_cfg.frames, run_cfg.eval_every) == (1_000_000, 50_000)
    plan = build_plan({"task": "cartpole-balance", "frames": text, "checkpoint_every": "500k",
                       "buffer_size": "100k", "root": str(tmp_path), "dry_run": "true"})
    rc = plan.runs[0].run_cfg
    assert (rc.frames, rc.checkpoint_every, rc.buffer_size) == (1_000_000, 500_000, 100_000)


@pytest.mark.parametrize("text", ["1.5", "1.5k7", "k", "0x10", "inf", "1e400", "abc", ""])
def test_bad_integer_forms(text):
    with pytest.raises(UsageError, match="expected int"):
        parse_value("frames", text, int)


# -- the generated sweep over every declared setting ---------------------------------------

def _declared(cfg, prefix: str = "") -> list[tuple[str, Valid, object]]:
    """(dotted key, Valid, default) of every declared setting of a config instance."""
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out += _declared(v, f"{prefix}{f.name}.")
        elif "valid" in f.metadata:
            out.append((prefix + f.name, f.metadata["valid"], v))
    return out


def _text(value) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(
        value)


def _outside(valid: Valid, default) -> list[str]:
    """Values just outside the declared range (as command-line text)."""
    if valid.choices is not None:
        return ["not-a-choice"]
    integer = isinstance(default, int) and not isinstance(default, bool)
    step = 1 if integer else 1e-3 * max(1.0, abs(valid.low or 0), abs(valid.high or 0))
    out = []
    if valid.low is not None:
        out.append(valid.low if not valid.low_inclusive else valid.low - step)
    if valid.high is not None:
        out.append(valid.high if not valid.high_inclusive else valid.high + step)
    return [str(int(v)) if integer else repr(float(v)) for v in out]


AGENT_NAMES = [*AGENTS, TINY]
CASES = [("run", "simbav2", key, valid, default)
         for key, valid, default in _declared(RunConfig())] + [
    ("agent", name, key, valid, default)
    for name in AGENT_NAMES for key, valid, default in _declared(load_agent(name).Config())]


def test_every_setting_that_needs_a_range_declares_one():
    for name in AGENT_NAMES:
        declared = {k for k, _, _ in _declared(load_agent(name).Config())}
        for key in flat_fields(load_agent(name).Config()):
            assert key in declared, f"{name}: {key} declares no valid range or choices"
    run_declared = {k for k, _, _ in _declared(RunConfig())}
    assert set(flat_fields(RunConfig())) - run_declared == {"task", "exp", "root", "agent"}
    assert len(CASES) > 60


@pytest.mark.parametrize("kind,agent,key,valid,default", CASES,
                         ids=[f"{a}:{k}" for _, a, k, _, _ in CASES])
def test_declared_ranges_are_enforced(tmp_path, kind, agent, key, valid, default):
    base = {"task": "cartpole-balance", "agent": agent, "root": str(tmp_path)}
    build({**base, key: _text(default)})   # the default is accepted
    bad_values = _outside(valid, default)
    assert bad_values or valid.low is None and valid.high is None
    for text in bad_values:
        with pytest.raises(UsageError) as e:
            build({**base, key: text})
        msg = str(e.value)
        assert f"for {key}" in msg and "\n" not in msg, msg
        if key != "seed":   # the launcher takes seeds=, not seed=
            with pytest.raises(UsageError, match=key.replace(".", r"\.")):
                build_plan({**base, "dry_run": "true", key: text})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("key", sorted(LAUNCH_VALID))
def test_launch_key_ranges_are_enforced(tmp_path, key):
    valid = LAUNCH_VALID[key]
    text = _outside(valid, 1.0 if key == "mem_gb" else 1)[0]
    base = {"task": "cartpole-balance", "root": str(tmp_path), "dry_run": "true"}
    if key != "workers":
        base["backend"] = "slurm"
    with pytest.raises(UsageError, match=f"for {key}: must be"):
        build_plan({**base, key: text})


def test_ordered_pairs_are_enforced():
    for name in AGENT_NAMES:
        cfg = load_agent(name).Config()
        for lo, hi in getattr(cfg, "ORDERED", ()):
            with pytest.raises(UsageError, match=f"for {lo}: must be < {hi}"):
                build({"task": "cartpole-balance", "agent": name,
                       lo: str(getattr(cfg, hi)), hi: str(getattr(cfg, hi))})


# -- a handful of real subprocesses: exit codes, one stderr line, nothing written -------------

@pytest.mark.parametrize("module,args,needle", [
    ("harness.run", ["task=cartpole-balance", "critic.width=0"], "bad value 0 for critic.width"),
    ("harness.run", ["critic.width=64"], "task= is required"),
    ("harness.launch", ["task=cartpole-balance", "dry_run=true", "seeds=0-1000000"],
     "at most 10,000"),
    ("suites", ["check", "steps=-3"], "bad value -3 for steps"),
])
def test_subprocess_rejections(tmp_path, module, args, needle):
    p = _cli(module, f"root={tmp_path / 'runs'}", *args) if module != "suites" else _cli(
        module, *args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and needle in p.stderr and "Traceback" not in p.stderr
    assert not any(tmp_path.iterdir())


def test_help_everywhere_exits_0():
    p = _cli("harness.run", "--help", "agent=simbav2")
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stdout.splitlines() if x.strip().startswith("critic.width="))
    assert "[valid: in [1, 65536]]" in line
    assert "tau=0.005" in p.stdout and "(0, 1]" in p.stdout
    p = _cli("harness.launch", "--help", f"agent=sac,{TINY}")
    assert p.returncode == 0 and "workers" in p.stdout and "noise=0.1" in p.stdout, p.stderr
    p = _cli("analysis.make_figures", "--help")
    assert p.returncode == 0 and "results=" in p.stdout and not p.stderr.strip(), p.stderr
    p = _cli("suites", "--help")
    assert p.returncode == 0 and "suites check" in p.stdout and "error" not in p.stderr
    assert "fidelity     Hopper-v4, cartpole-swingup" in p.stdout  # the presets are listed
