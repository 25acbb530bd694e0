"""SLURM backend: the selected runs as submitit job arrays, several runs per GPU job.

Each array task is a `RunJob`: it starts one `python -m harness.run` process per packed run
(JAX GPU memory preallocation off, so they share the GPU) and waits for them. On preemption or
time limit submitit calls `RunJob.checkpoint`: the runs get SIGUSR2, write their checkpoints and
stop, and the job is requeued; when it restarts, every run resumes from its own checkpoint
(completed ones are skipped). A plain `scontrol requeue` sends SIGTERM, which the runs treat
the same way.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import submitit

from harness.plan import Plan, PlannedRun, process_args
from harness.store import atomic_write_json

CHILD_STOP_TIMEOUT_S = 120


class RunJob(submitit.helpers.Checkpointable):
    """One SLURM (array) task: a few runs, each in its own process."""

    def __init__(self, runs: list[tuple[str, list[str]]]):
        self.runs = runs          # [(run directory, harness.run arguments)]
        self._procs: list[subprocess.Popen] = []

    def __call__(self) -> dict[str, int]:
        env = dict(os.environ)
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("MUJOCO_GL", "egl" if env.get("CUDA_VISIBLE_DEVICES") else "disable")
        self._procs = []
        for path, args in self.runs:
            Path(path).mkdir(parents=True, exist_ok=True)
            with open(Path(path) / "worker.log", "a") as log:
                self._procs.append(subprocess.Popen(
                    [sys.executable, "-m", "harness.run", *args],
                    stdout=log, stderr=subprocess.STDOUT, env=env))
        codes = {path: p.wait() for (path, _), p in zip(self.runs, self._procs)}
        bad = {p: c for p, c in codes.items() if c not in (0, 4)}
        if bad:
            raise RuntimeError(f"runs did not complete (exit codes; 1 = failed, see "
                               f"status.json; 3 = stopped): {bad}")
        return codes

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Called by submitit from its signal handler, i.e. while __call__ sits in
        Popen.wait(): a nested Popen.wait could not take Popen's internal lock and would only
        time out, so the children's exit is watched through /proc instead."""
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
        for p in self._procs:
            while _alive(p.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(p.pid):
                p.kill()
        return submitit.helpers.DelayedSubmission(RunJob(self.runs))

    def __getstate__(self):
        return {"runs": self.runs}

    def __setstate__(self, state):
        self.runs = state["runs"]
        self._procs = []


def _alive(pid: int) -> bool:
    """True while `pid` runs (an exited child waiting to be reaped is a zombie: not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def executor_for(plan: Plan) -> submitit.AutoExecutor:
    prof = plan.profile
    root = Path(plan.runs[0].run_cfg.root)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = root / "_submitit" / f"{plan.runs[0].run_cfg.exp.split('/')[0]}-{stamp}" / "%j"
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = dict(slurm_partition=prof["partition"], cpus_per_task=int(prof["cpus_per_task"]),
                  mem_gb=float(prof["mem_gb"]), timeout_min=int(prof["time_min"]),
                  slurm_array_parallelism=int(prof["array_parallelism"]),
                  name=f"simbabench-{plan.runs[0].run_cfg.exp.split('/')[0]}",
                  slurm_additional_parameters=dict(prof.get("extra_sbatch") or {}),
                  slurm_setup=list(prof.get("setup") or []))
    if int(prof.get("gpus_per_job") or 0) > 0:
        params["gpus_per_node"] = int(prof["gpus_per_job"])
    if prof.get("account"):
        params["slurm_account"] = prof["account"]
    if prof.get("qos"):
        params["slurm_qos"] = prof["qos"]
    ex.update_parameters(**params)
    return ex


def job_chunks(plan: Plan) -> list[list[list[PlannedRun]]]:
    """The selected runs as jobs of processes: each process holds up to seeds_per_process
    seeds of one config, each job runs_per_job runs rounded to whole processes."""
    procs, per_job = plan.processes(), plan.processes_per_job
    return [procs[i:i + per_job] for i in range(0, len(procs), per_job)]


def submit(plan: Plan, echo) -> list:
    jobs_procs = job_chunks(plan)
    chunks = [[r for group in job for r in group] for job in jobs_procs]
    per_job = max(len(c) for c in chunks) if chunks else 0
    ex = executor_for(plan)
    # SLURM caps array sizes (MaxArraySize, 1001 by default): one array per slice of jobs
    cap = int(plan.profile.get("max_array_size") or 1000)
    jobs = []
    for start in range(0, len(chunks), cap):
        with ex.batch():
            jobs += [ex.submit(RunJob([(str(group[0].store.path),
                                        process_args(group, progress="lines",
                                                     options=plan.process_options))
                                       for group in job]))
                     for job in jobs_procs[start:start + cap]]
    # job ids go to their own file: the job may already be running and own status.json
    for job, chunk in zip(jobs, chunks):
        for r in chunk:
            atomic_write_json(r.store.path / "job.json", {
                "job_id": job.job_id, "submitted": _dt.datetime.now().isoformat(),
                "partition": plan.profile["partition"], "runs_in_job": len(chunk)})
    arrays = sorted({j.job_id.split("_")[0] for j in jobs})
    echo(f"SLURM array(s) {', '.join(arrays)}: {len(jobs)} task(s), {per_job} run(s) "
         f"each, partition {plan.profile['partition']}, at most "
         f"{plan.profile['array_parallelism']} at once")
    return jobs
