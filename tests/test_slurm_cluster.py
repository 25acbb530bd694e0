"""The local SLURM test cluster (`bash slurm/cluster.sh up`): partitions and a submitit GPU job.

Skipped, with the reason, when the Slurm client tools are missing or slurmctld is not answering.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

HERE = Path(__file__).resolve().parent
PROFILES = HERE.parent / "slurm" / "profiles"


def _cluster_problem() -> str | None:
    """Why the local cluster cannot be used, or None when it answers."""
    if shutil.which("sinfo") is None or shutil.which("scontrol") is None:
        return "Slurm client tools not on PATH (run: bash slurm/cluster.sh up)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "`scontrol ping` timed out (run: bash slurm/cluster.sh up)"
    if "is UP" not in ping.stdout:
        first = (ping.stdout.strip() or ping.stderr.strip() or "no answer").splitlines()[0]
        return f"slurmctld is not up: {first} (run: bash slurm/cluster.sh up)"
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)


def job_env() -> dict[str, str | None]:
    """Runs inside the Slurm job (imported there by module name: see PYTHONPATH below)."""
    keys = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_PARTITION", "SLURM_GPUS_ON_NODE")
    return {k: os.environ.get(k) for k in keys}


def test_partitions_cpu_and_gpu(slurm_cluster):
    out = subprocess.run(["sinfo", "-h", "-o", "%R %a %T %G"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert {"cpu", "gpu"} <= set(rows), out
    for part in ("cpu", "gpu"):
        avail, state, _ = rows[part]
        assert avail == "up", out
        assert state in {"idle", "mixed", "allocated", "completing"}, out
    assert "gpu:" in rows["gpu"][2], f"no GPU GRES on the gpu partition: {out}"


def test_local_profile_partitions_exist(slurm_cluster):
    yaml = pytest.importorskip("yaml")
    profile = yaml.safe_load((PROFILES / "local.yaml").read_text())
    out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=10,
                         check=True).stdout.split()
    assert profile["partition"] in profile["partitions"]
    assert set(profile["partitions"]) <= set(out)


def test_submitit_gpu_job_sees_cuda_visible_devices(slurm_cluster, tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    # submitit pickles job_env by reference ("test_slurm_cluster.job_env"); sbatch exports the
    # submitting environment, so the job's Python finds this module through PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p))
    executor = submitit.AutoExecutor(folder=tmp_path / "%j")
    assert executor.cluster == "slurm"
    executor.update_parameters(slurm_partition="gpu", gpus_per_node=1, cpus_per_task=1, mem_gb=1,
                               timeout_min=5, name="simbabench-test")
    job = executor.submit(job_env)
    deadline = time.monotonic() + 60
    while not job.done():
        if time.monotonic() > deadline:
            job.cancel(check=False)
            pytest.fail(f"job {job.job_id} not done after 60 s: {job.state}")
        time.sleep(0.2)
    env = job.result()
    assert env["SLURM_JOB_PARTITION"] == "gpu"
    assert env["CUDA_VISIBLE_DEVICES"] not in (None, ""), env
    assert len(env["CUDA_VISIBLE_DEVICES"].split(",")) == 1, env
