"""`python -m harness.launch suite=all agent=simbav2 [seeds=0-9] [exp=NAME] [root=runs]
[frames=N] [backend=local|slurm] [workers=N] [seeds_per_process=K] [batching=] [envs=]
[profile=local]
[partition=...] [runs_per_job=N] [dry_run=true] [only=all|failed|unfinished]
[<run or agent setting>=v1,v2,... sweeps]`

seeds_per_process=K runs K seeds of the same (agent, task, config) in one process, acting and
updating them as one batch on the device (harness/multirun.py; each stays an ordinary run with
its own directory); `batching=auto|map|vmap` and `envs=auto|inline|process` go to those
processes (docs/multiseed.md). workers= counts processes; on SLURM a job holds runs_per_job
runs, rounded to whole processes.

agent= takes registered agents (simbav2, sac, simba, crossq) and import paths
(`my_pkg.my_module:MyAgent`, docs/adding-a-baseline.md), comma-separated: a sweep over agents
puts each agent's runs under <exp>/<agent label>. `--help agent=a,b` lists their settings.

Every key and value is checked before anything is written or submitted (exit status 2, one
`error:` line): each setting against its declared range (listed below), root= must be a
writable directory (or creatable), seeds in [0, 2^31-1], at most 10,000 runs per launch.
Integer settings accept 1000000, 1_000_000, 1e6, 1M and 500k.

Plans seeded runs (tasks x seeds x agents x sweep points), prints a summary (how many are
completed, to resume, new, failed, and an estimate of the remaining hours from measured
throughput), then runs what is not completed: locally in a pool of worker processes, or as
SLURM job arrays through submitit (submits and returns). Relaunching the same command is
always safe: completed runs are skipped, unfinished ones resume from their checkpoints, and a
per-run lock keeps two launches from running the same run.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("MUJOCO_GL", "disable")

from harness.cli import UsageError, fail, split_kv  # noqa: E402
from agents.base import agent_label  # noqa: E402
from harness.plan import (Plan, PlannedRun, build_plan, process_args,  # noqa: E402
                          refresh_states)

STATE_ORDER = ("completed", "running", "resume", "new", "failed", "other-config")


def seconds_per_frame(plan: Plan) -> dict[tuple, float]:
    """Measured wall seconds per env frame of completed runs, per (agent, sweep point), and
    under the key () over all of them."""
    samples: dict[tuple, list[float]] = collections.defaultdict(list)
    for r in plan.runs:
        if r.state != "completed":
            continue
        st = r.store.status()
        if st.wall_time_s and st.frames_done:
            spf = st.wall_time_s / st.frames_done
            samples[(r.run_cfg.agent, r.point)].append(spf)
            samples[()].append(spf)
    return {k: sorted(v)[len(v) // 2] for k, v in samples.items()}


def summary(plan: Plan) -> str:
    groups: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in plan.runs:
        groups[(agent_label(r.run_cfg.agent), r.task.domain, r.point)][r.state] += 1
    lines = [f"{'agent':10s} {'domain':9s} {'sweep point':28s} {'runs':>5s} " +
             " ".join(f"{s:>9s}" for s in STATE_ORDER)]
    for (agent, domain, point), c in groups.items():
        lines.append(f"{agent:10s} {domain:9s} {point or '-':28s} {sum(c.values()):5d} " +
                     " ".join(f"{c[s]:9d}" for s in STATE_ORDER))
    total = collections.Counter(r.state for r in plan.runs)
    lines.append(f"{'total':10s} {'':9s} {'':28s} {len(plan.runs):5d} " +
                 " ".join(f"{total[s]:9d}" for s in STATE_ORDER))
    todo = plan.selected()
    spf = seconds_per_frame(plan)
    if spf:
        hours = sum((r.run_cfg.frames - r.frames_done) *
                    spf.get((r.run_cfg.agent, r.point), spf[()]) for r in todo) / 3600
        lines.append(f"to run: {len(todo)} runs, about {hours:,.1f} run-hours at the measured "
                     f"throughput of completed runs ({_cost(plan, hours)})")
    else:
        lines.append(f"to run: {len(todo)} runs (no completed run yet to measure throughput "
                     "from, so no time estimate)")
    return "\n".join(lines)


def measured_devices(plan: Plan) -> set[str]:
    """Device kinds (status.json `device`: "cpu", "NVIDIA H100 ...") of the completed runs
    whose throughput the estimate uses."""
    out = set()
    for r in plan.runs:
        if r.state == "completed":
            dev = r.store.status().device
            if dev:
                out.add(str(dev))
    return out


def _local_is_gpu(plan: Plan) -> bool:
    """Whether local runs run on a GPU: the device the completed runs recorded, else JAX's
    platform as configured (JAX_PLATFORMS, an installed CUDA plugin). The launcher does not
    initialise JAX itself: on a GPU that would reserve most of its memory in this process."""
    devices = measured_devices(plan)
    if devices:
        return any(d.lower() != "cpu" for d in devices)
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0] not in ("cpu", "")
    import importlib.util

    return any(importlib.util.find_spec(m) is not None
               for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm_plugin"))


def _cost(plan: Plan, run_hours: float) -> str:
    """What `run_hours` of runs cost on this backend, in the unit that is actually spent,
    assuming the runs packed together (seeds in a process, processes in a job) keep the
    measured single-run rate (`python -m harness.bench multiseed` measures how far that
    holds on your hardware)."""
    k = plan.seeds_per_process
    packing = f", {k} seeds per process" if k > 1 else ""
    if plan.backend == "slurm":
        per_job = runs_in_job(plan)
        gpus = int(plan.profile.get("gpus_per_job") or 0)
        job_hours = run_hours / per_job
        if gpus > 0:
            return (f"~{job_hours * gpus:,.1f} GPU-hours with {per_job} run(s) per job of "
                    f"{gpus} GPU(s){packing}")
        return f"~{job_hours:,.1f} CPU job-hours with {per_job} run(s) per job{packing}"
    workers = max(1, int(plan.workers or 1))
    wall = run_hours / min(workers * k, max(1, len(plan.selected())))
    where = "sharing the local GPU" if _local_is_gpu(plan) else "on the local CPUs"
    return f"~{wall:,.1f} h wall-clock with {workers} worker(s){packing} {where}"


def runs_in_job(plan: Plan) -> int:
    """Runs per SLURM job: whole processes of `seeds_per_process` seeds."""
    return plan.processes_per_job * plan.seeds_per_process


def listing(plan: Plan) -> str:
    sel = {id(r) for r in plan.selected()}
    return "\n".join(
        f"{'*' if id(r) in sel else ' '} {r.state:12s} {agent_label(r.run_cfg.agent)} {r.task.name} "
        f"seed={r.run_cfg.seed} {r.point or '-'} {r.store.path}"
        + (f"  ({r.reason})" if r.reason else "") for r in plan.runs)


# -- local backend -----------------------------------------------------------------------------

def _frames_done(r: PlannedRun) -> int:
    st = r.store.status()
    if st.completed:
        return r.run_cfg.frames
    return int(st.frames_done)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_lines(runs: list[PlannedRun], active: list[PlannedRun], codes: collections.Counter,
                   elapsed: float, start_frames: int, spf: float | None = None,
                   workers: int = 1) -> list[str]:
    """The launcher's progress: one overall line (runs finished, frames done / budget, ETA),
    then one line per running run (task, seed, sweep point, frames done / budget). The ETA
    extrapolates this launch's frame rate; before any frame is done, the measured seconds per
    frame of completed runs (`spf`) over `workers` parallel runs, if known."""
    done = {id(r): _frames_done(r) for r in runs}
    total = sum(r.run_cfg.frames for r in runs) or 1
    frames = sum(done.values())
    rate = (frames - start_frames) / elapsed if elapsed > 0 else 0.0
    left = max(0, total - frames)
    if left == 0:
        eta = "done"
    elif rate > 0:
        eta = f"ETA {_duration(left / rate)}"
    elif spf:
        eta = f"ETA ~{_duration(left * spf / max(1, min(workers, len(runs))))} (measured)"
    else:
        eta = "ETA unknown yet"
    head = (f"[launch] {sum(codes.values())}/{len(runs)} runs finished "
            f"({', '.join(f'{v} {k}' for k, v in codes.items()) or 'none yet'}), "
            f"{len(active)} running, frames {frames}/{total} ({100 * frames / total:.0f}%), "
            f"{eta}, elapsed {_duration(elapsed)}")
    lines = [head]
    for r in active:
        n, b = done[id(r)], r.run_cfg.frames
        lines.append(f"[launch]   {r.task.name} seed {r.run_cfg.seed}"
                     f"{' ' + r.point if r.point else ''}: {n}/{b} frames "
                     f"({100 * n / max(b, 1):.0f}%)")
    return lines


def _run_label(r: PlannedRun, returncode: int) -> str:
    """One run's outcome from its process's exit status (a process of several seeds exits 1
    when any failed: each run's own status says which)."""
    if returncode == 1 and r.store.status().completed:
        return "completed"
    return {0: "completed", 1: "failed", 3: "stopped", 4: "held elsewhere"}.get(
        returncode, f"crashed (exit {returncode})")


def worker_env(base, workers: int) -> dict:
    """The environment of the local worker processes: `base`, and with several workers
    XLA_PYTHON_CLIENT_PREALLOCATE=false unless set (several JAX processes on one GPU: by
    default the first reserves 75% of its memory and the second fails to start)."""
    env = dict(base)
    if workers > 1:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def run_local(plan: Plan, echo) -> int:
    """Run the selected runs in `plan.workers` worker processes (each holding up to
    `seeds_per_process` seeds); every 10 s an overall progress line with an ETA and one line
    per running run."""
    todo = plan.processes()
    runs = [r for group in todo for r in group]
    active: dict[subprocess.Popen, list[PlannedRun]] = {}
    codes: collections.Counter = collections.Counter()
    env = worker_env(os.environ, plan.workers)
    last_print = 0.0
    t0 = time.time()
    start_frames = sum(_frames_done(r) for r in runs)
    spf = seconds_per_frame(plan).get(())
    while todo or active:
        while todo and len(active) < plan.workers:
            group = todo.pop(0)
            for r in group:
                r.store.path.mkdir(parents=True, exist_ok=True)
            # one log per process, in its first run's directory
            log = open(group[0].store.path / "worker.log", "a")
            p = subprocess.Popen([sys.executable, "-m", "harness.run", *process_args(
                group, options=plan.process_options)],
                                 stdout=log, stderr=subprocess.STDOUT, env=env)
            log.close()
            active[p] = group
        time.sleep(0.5)
        for p in [p for p in active if p.poll() is not None]:
            for r in active.pop(p):
                label = _run_label(r, p.returncode)
                codes[label] += 1
                if label not in ("completed", "held elsewhere"):
                    reason = r.store.status().reason
                    echo(f"{r.task.name} seed {r.run_cfg.seed} {r.point}: {label}"
                         f"{': ' + reason if reason else ''}")
        now = time.time()
        if now - last_print > 10 or (not todo and not active):
            for line in progress_lines(runs, [r for g in active.values() for r in g], codes,
                                       now - t0, start_frames, spf,
                                       plan.workers * plan.seeds_per_process):
                echo(line)
            last_print = now
    return 0 if set(codes) <= {"completed", "held elsewhere"} else 1


# -- main --------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from harness.config import settings_help

        agents = next((a.partition("=")[2] for a in argv if a.startswith("agent=")), "simbav2")
        from harness.plan import LAUNCH_VALID

        launch_lines = "\n".join(f"  {k:22s} [valid: {v.describe()}]"
                                  for k, v in LAUNCH_VALID.items())
        try:
            print(__doc__ + "\nlaunch settings:\n" + launch_lines + "\n"
                  + settings_help(*[a.strip() for a in agents.split(",") if a.strip()]))
        except UsageError as e:
            fail(str(e))
        return 0
    t0 = time.perf_counter()
    try:
        given = split_kv(argv)
        plan = build_plan(given)
        if plan.backend == "slurm" and not plan.dry_run and shutil.which("sbatch") is None:
            raise UsageError("backend=slurm but `sbatch` is not on PATH (run this on a SLURM "
                             "login node, or use backend=local)")
    except UsageError as e:
        fail(str(e))
    echo = lambda line: print(line, flush=True)  # noqa: E731
    echo(summary(plan))
    echo(f"planned in {time.perf_counter() - t0:.2f}s")
    if plan.dry_run:
        echo(listing(plan))
        return 0
    if not plan.selected():
        echo("nothing to run: every run is completed, running elsewhere or not selected")
        return 0
    if plan.backend == "local":
        code = run_local(plan, echo)
        refresh_states(plan)
        echo(summary(plan))
        return code
    from harness.slurm_backend import submit

    try:
        jobs = submit(plan, echo)
    except Exception as e:  # sbatch refused (bad flag, account, partition limits, ...)
        print(f"error: submission failed: {type(e).__name__}: {str(e).strip()}",
              file=sys.stderr)
        return 1
    echo(f"submitted {len(jobs)} job(s) for {len(plan.selected())} runs in "
         f"{time.perf_counter() - t0:.2f}s; follow with: python -m harness.status "
         f"exp={plan.runs[0].run_cfg.exp.split('/')[0]} root={plan.runs[0].run_cfg.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
