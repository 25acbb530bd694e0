"""docs/adding-a-baseline.md, done for real: an agent defined outside the `agents` package
(tests/tiny_agent.py, the doc's listing) is launched by import path beside every registered
agent from one command, trained on a real task, and shown by analysis.make_figures next to
the published SimbaV2 results."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agents.base import AGENTS

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
DOC = REPO / "docs" / "adding-a-baseline.md"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    return env


def test_the_doc_lists_the_tested_agent_verbatim():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    listing = (TESTS / "tiny_agent.py").read_text()
    assert any(b.strip() == listing.strip() for b in blocks), (
        "docs/adding-a-baseline.md must show tests/tiny_agent.py verbatim")


@pytest.mark.slow
def test_launch_by_path_beside_every_agent_then_make_figures(tmp_path, results_dir_or_none):
    agents = ["tiny_agent:TinyDDPG", *AGENTS]
    launch = [sys.executable, "-m", "harness.launch", "task=cartpole-balance",
              f"agent={','.join(agents)}", "seeds=1", "frames=1000", "warmup_steps=200",
              "eval_every=500", "eval_episodes=1", "metrics_every=500", "log_every=500",
              "actor.width=16", "critic.width=32", "critic.depth=1", "width=32",
              "batch_size=32", f"root={tmp_path}", "exp=byp", "workers=2"]
    p = subprocess.run(launch, capture_output=True, text=True, timeout=900, env=_env())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    labels = ["TinyDDPG", *AGENTS]
    for label in labels:
        assert (tmp_path / "byp" / label / "cartpole-balance" / "seed_0" / "eval.csv").is_file()
    # relaunching the same command finds every run completed
    p = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 0 and "nothing to run" in p.stdout

    results = [str(tmp_path / "byp")]
    if results_dir_or_none is not None:
        results.append(str(results_dir_or_none / "simbaV2_utd2.csv"))
    out = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "analysis.make_figures",
                        f"results={','.join(results)}", f"out={out}", "frames=1000",
                        "reps=100"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    scores = pd.read_csv(out / "scores.csv")
    methods = [f"byp/{label}" for label in labels]
    assert set(scores["method"]) == set(methods)
    # scaling facts come from config.json["scale"], the same for every agent
    assert (scores["width"] == 32).all()
    assert scores.set_index("method").loc["byp/TinyDDPG", "agent"] == "TinyDDPG"
    report = (out / "report.md").read_text()
    for m in methods:
        assert f"| {m} |" in report
    # the dynamics section names the agent that logs no norm / effective-LR metrics
    assert re.search(r"No norm / effective-LR metrics .* logged by: byp/TinyDDPG", report)
    assert "dynamics_dmc-em" in report
    if results_dir_or_none is not None:
        assert "simbaV2_utd2" in report
