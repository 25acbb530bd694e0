"""The `fidelity` preset (docs/fidelity.md): the rule in analysis/fidelity.py, applied to the
published SimbaV2 file, gives exactly the list registered in suites/tasks.py; the documented
commands use real keys; and a scaled-down version of the documented check runs end to end on
CPU (launch the preset, then analysis.compare against the published file).

The scaled-down run checks plumbing, not fidelity: with 1,000 frames the only frame both sides
evaluated is frame 0, so its verdicts say nothing about the agent.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import fidelity
from suites import resolve
from suites.tasks import SUITES

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "fidelity.md"
PRESET = SUITES["fidelity"]


def _env() -> dict:
    return {**os.environ, "MUJOCO_GL": "disable", "JAX_PLATFORMS": "cpu"}


# -- (1) the preset is what the rule gives -----------------------------------------------------

def test_the_rule_reproduces_the_registered_preset(published):
    tasks, ratio = fidelity.derive(published)
    assert tasks == PRESET
    assert (ratio >= fidelity.MIN_RATIO).all() and list(ratio.index) == PRESET
    table = fidelity.task_table(published).set_index("task")
    chosen = table.loc[PRESET]
    assert chosen["eligible"].all() and (chosen["seeds"] == 10).all()
    assert (chosen["mdd"] <= fidelity.MAX_MDD).all()
    # what the preset is for: a clipped double-Q domain and one-critic domains, no HumanoidBench
    domains = {t.domain: t.episodic for t in resolve("fidelity")}
    assert True in domains.values() and False in domains.values() and "hbench" not in domains
    assert table.loc[table["selected"]].index.tolist() == PRESET


def test_the_rule_is_the_documented_one(published):
    """docs/fidelity.md shows the rule's numbers and the module's commands verbatim."""
    text = DOC.read_text()
    table = fidelity.task_table(published).set_index("task")
    for task in PRESET:
        r = table.loc[task]
        row = re.search(rf"^\| {re.escape(task)} \|.*$", text, re.MULTILINE)
        assert row, f"{task} missing from docs/fidelity.md"
        for x in (r.score_f, r.score_full, r.ratio, r.sd_f):
            assert f"{x:.3f}" in row.group(0), (task, x, row.group(0))
    launch, _ = fidelity.commands(PRESET, fidelity.FRAMES, fidelity.SEEDS, fidelity.WORKERS,
                                  "REF")
    assert launch in text
    c = fidelity.cost(len(PRESET), fidelity.SEEDS, fidelity.FRAMES, fidelity.WORKERS)
    assert (c.runs, c.waves) == (15, 2) and c.gpu_hours == pytest.approx(0.96)
    assert fidelity.matching_lr_end(fidelity.FRAMES) == pytest.approx(8.5e-5)


def test_the_documented_commands_use_real_keys(tmp_path):
    """Every command in docs/fidelity.md's shell blocks names existing keys: the launch is
    planned for real (dry_run), the compare keys are checked against analysis.compare's."""
    text = DOC.read_text()
    lines = [ln.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)
             for ln in block.splitlines() if "python -m " in ln]
    launches = [ln for ln in lines if "harness.launch" in ln]
    compares = [ln for ln in lines if "analysis.compare" in ln]
    assert launches and compares
    for ln in launches:
        args = [a for a in shlex.split(ln) if "=" in a and not a.startswith("XLA_")]
        args = [a for a in args if not a.startswith("root=")] + [f"root={tmp_path}",
                                                                 "dry_run=true"]
        p = subprocess.run([sys.executable, "-m", "harness.launch", *args], cwd=REPO,
                           capture_output=True, text=True, timeout=120, env=_env())
        assert p.returncode == 0, p.stderr
        if "suite=fidelity" in ln:
            assert sum(f"simbav2 {t} seed=" in p.stdout for t in PRESET) == len(PRESET)
    from analysis import compare
    for ln in compares:
        keys = {a.split("=")[0] for a in shlex.split(ln)[3:]}
        assert keys <= set(compare.KEYS), keys - set(compare.KEYS)


# -- (2) the documented check, scaled down, end to end -----------------------------------------

# Tiny but real: every preset task, 2 seeds, the documented launch keys (lr_end included), a
# 16-wide network and few updates (compile-dominated: ~10 s per run on one core).
FRAMES = 1000
SCALED = [f"frames={FRAMES}", f"lr_end={fidelity.matching_lr_end(FRAMES)}", "seeds=0-1",
          "workers=2", "warmup_steps=100", "eval_every=1000", "eval_episodes=1",
          "actor.width=16", "critic.width=16", "critic.depth=1", "batch_size=32",
          "updates_per_frame=0.25", "log_every=500", "metrics_every=-1", "checkpoint_every=0"]


def test_scaled_down_fidelity_check_end_to_end(published, tmp_path):
    from analysis import compare
    p = subprocess.run([sys.executable, "-m", "harness.launch", "suite=fidelity",
                        "agent=simbav2", *SCALED, f"root={tmp_path}", "exp=fidelity"],
                       cwd=REPO, capture_output=True, text=True, timeout=900, env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = tmp_path / "cmp"
    p = subprocess.run([sys.executable, "-m", "analysis.compare",
                        f"results={tmp_path / 'fidelity'}", f"reference={published}",
                        f"frames={FRAMES}", f"out={out}", "reps=200"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for name in compare.OUT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    v = pd.read_csv(out / "verdicts.csv")
    assert sorted(v["task"]) == sorted(PRESET)
    assert (v["ours_n"] == 2).all() and (v["ref_n"] == 10).all()
    assert set(v["verdict"]) <= {"consistent", "better", "worse"}
    report = (out / "report.md").read_text()
    assert re.search(r"seeds[^\n]*\b2\b[^\n]*\b10\b", report), "report must state 2 vs 10 seeds"
    for task in PRESET:
        assert task in report
