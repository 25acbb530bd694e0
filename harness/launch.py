"""`python -m harness.launch suite=all agent=simbav2 [seeds=0-9] [exp=NAME] [root=runs]
[frames=N] [backend=local|slurm] [workers=N] [profile=local] [partition=...] [runs_per_job=N]
[dry_run=true] [only=all|failed|unfinished] [<run or agent setting>=v1,v2,... sweeps]`

agent= takes registered agents (simbav2, sac, simba, crossq) and import paths
(`my_pkg.my_module:MyAgent`, docs/adding-a-baseline.md), comma-separated: a sweep over agents
puts each agent's runs under <exp>/<agent label>. `--help agent=a,b` lists their settings.

Plans seeded runs (tasks x seeds x agents x sweep points), prints a summary (how many are
completed, to resume, new, failed, and an estimate of the remaining GPU-hours from measured
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
from harness.plan import Plan, PlannedRun, build_plan, refresh_states  # noqa: E402
from harness.store import read_json  # noqa: E402

STATE_ORDER = ("completed", "running", "resume", "new", "failed", "other-config")


def seconds_per_frame(plan: Plan) -> dict[tuple, float]:
    """Measured wall seconds per env frame of completed runs, per (agent, sweep point), and
    under the key () over all of them."""
    samples: dict[tuple, list[float]] = collections.defaultdict(list)
    for r in plan.runs:
        if r.state != "completed":
            continue
        st = read_json(r.store.status_path) or {}
        if st.get("wall_time_s") and st.get("frames_done"):
            spf = st["wall_time_s"] / st["frames_done"]
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
        per_job = plan.profile.get("runs_per_job", 1) if plan.backend == "slurm" else 1
        lines.append(f"to run: {len(todo)} runs, about {hours:,.1f} run-hours at the measured "
                     f"throughput of completed runs (~{hours / per_job:,.1f} GPU-hours with "
                     f"{per_job} run(s) per GPU)")
    else:
        lines.append(f"to run: {len(todo)} runs (no completed run yet to measure throughput "
                     "from, so no GPU-hour estimate)")
    return "\n".join(lines)


def listing(plan: Plan) -> str:
    sel = {id(r) for r in plan.selected()}
    return "\n".join(
        f"{'*' if id(r) in sel else ' '} {r.state:12s} {agent_label(r.run_cfg.agent)} {r.task.name} "
        f"seed={r.run_cfg.seed} {r.point or '-'} {r.store.path}"
        + (f"  ({r.reason})" if r.reason else "") for r in plan.runs)


# -- local backend -----------------------------------------------------------------------------

def run_local(plan: Plan, echo) -> int:
    """Run the selected runs in `plan.workers` worker processes; one overall progress line."""
    todo = list(plan.selected())
    total_frames = sum(r.run_cfg.frames for r in todo) or 1
    active: dict[subprocess.Popen, PlannedRun] = {}
    codes: collections.Counter = collections.Counter()
    env = dict(os.environ)
    last_print = 0.0
    while todo or active:
        while todo and len(active) < plan.workers:
            r = todo.pop(0)
            r.store.path.mkdir(parents=True, exist_ok=True)
            log = open(r.store.path / "worker.log", "a")
            p = subprocess.Popen([sys.executable, "-m", "harness.run", *r.args()], stdout=log, stderr=subprocess.STDOUT,
                                 env=env)
            log.close()
            active[p] = r
        time.sleep(0.5)
        for p in [p for p in active if p.poll() is not None]:
            r = active.pop(p)
            label = {0: "completed", 1: "failed", 3: "stopped", 4: "held elsewhere"}.get(
                p.returncode, f"crashed (exit {p.returncode})")
            codes[label] += 1
            if p.returncode not in (0, 4):
                st = read_json(r.store.status_path) or {}
                echo(f"{r.task.name} seed {r.run_cfg.seed} {r.point}: {label}"
                     f"{': ' + st['reason'] if st.get('reason') else ''}")
        now = time.time()
        if now - last_print > 10 or (not todo and not active):
            done_frames = sum(
                r.run_cfg.frames if (read_json(r.store.status_path) or {}).get("state")
                == "completed" else int((read_json(r.store.status_path) or {})
                                        .get("frames_done", 0) or 0)
                for r in plan.selected())
            echo(f"[launch] {sum(codes.values())}/{len(plan.selected())} runs finished "
                 f"({', '.join(f'{v} {k}' for k, v in codes.items()) or 'none yet'}), "
                 f"{len(active)} running, frames {100 * done_frames / total_frames:.0f}%")
            last_print = now
    return 0 if set(codes) <= {"completed", "held elsewhere"} else 1


# -- main --------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from harness.config import settings_help

        agents = next((a.partition("=")[2] for a in argv if a.startswith("agent=")), "simbav2")
        try:
            print(__doc__ + settings_help(*[a.strip() for a in agents.split(",") if a.strip()]))
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
