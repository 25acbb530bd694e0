"""`python -m harness.run task=<task> agent=simbav2 seed=<int> frames=<int> root=<dir>
exp=<name> [any run or agent setting as key=value]`

agent= is a registered agent (simbav2, sac, simba, crossq) or an import path
(`my_pkg.my_module:MyAgent`, see docs/adding-a-baseline.md); `--help agent=NAME` lists that
agent's settings.

task= is required. Integer settings accept 1000000, 1_000_000, 1e6, 1M and 500k. Every
setting is checked against its declared range (listed below) and root= must be a writable
directory (or creatable) before anything starts or is written.

Runs one run in the foreground: starts it, resumes it from its checkpoint, or says it is
already completed. `seeds=0-3` (a range, a list `0,3,7`, instead of seed=) runs those seeds of
the same config in one process, acting and updating them as one batch (harness/multirun.py):
each is an ordinary run with its own directory; `batching=auto|map|vmap` chooses how (auto:
map, bit-exact with single-seed runs, on CPU; vmap on accelerators), and
`envs=auto|inline|process` where the seeds' environments step (auto: a pool of processes
stepping them in parallel where the task's measured step time makes it faster, else in this
process; results are the same either way). Bad keys or values are rejected before anything
starts (exit status 2).
Exit status: 0 completed, 1 failed (reason in status.json), 3 stopped by a signal after
writing a checkpoint (run the same command again to continue), 4 the run is held by another
process (it is already running elsewhere; nothing was done).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("MUJOCO_GL", "disable")

from harness.cli import UsageError, check_choice, fail, split_kv  # noqa: E402
from harness.config import build  # noqa: E402


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from harness.config import settings_help

        agent = next((a.partition("=")[2] for a in argv if a.startswith("agent=")), "simbav2")
        try:
            print(__doc__ + settings_help(agent))
        except UsageError as e:
            fail(str(e))
        return 0
    try:
        given = split_kv(argv)
        if "seeds" not in given and ({"batching", "envs"} & given.keys()):
            raise UsageError("batching= and envs= apply to several seeds in one process "
                             "(seeds=0-3 instead of seed=)")
        seeds, batching = None, given.pop("batching", "auto")
        envs = given.pop("envs", "auto")
        if "seeds" in given:
            from harness.envpool import ENVS
            from harness.multirun import BATCHING
            from harness.plan import parse_seeds

            if "seed" in given:
                raise UsageError("give seed= (one run) or seeds= (several in one process), "
                                 "not both")
            seeds = parse_seeds(given.pop("seeds"))
            check_choice("batching", batching, BATCHING)
            check_choice("envs", envs, ENVS)
            given["seed"] = str(seeds[0])
        run_cfg, agent_cfg = build(given)
        if "task" not in given:
            raise UsageError("task= is required (e.g. task=cartpole-balance; "
                             "`python -m suites list` lists every task)")
        from suites import is_available

        if not is_available(run_cfg.task):
            from suites.envs.humanoid_bench import INSTALL_HINT
            raise UsageError(f"task {run_cfg.task} needs HumanoidBench. {INSTALL_HINT}")
    except UsageError as e:
        fail(str(e))
    from harness.jaxsetup import configure
    from harness.runner import Preempted, Run, RunFailed

    configure()
    from harness.store import RunDir, RunLocked

    from dataclasses import replace

    from harness.multirun import MultiRun

    runs = [Run(c, agent_cfg, store=RunDir(c.root, c.exp, c.task, c.seed))
            for c in (replace(run_cfg, seed=s) for s in (seeds or [run_cfg.seed]))]
    try:
        if seeds is None:
            results = {run_cfg.seed: runs[0].run()}
        else:  # several seeds in one process: exit 1 when any of them failed
            results = MultiRun(runs, batching, envs).run()
    except RunFailed as e:
        print(f"error: run failed: {e}", file=sys.stderr)
        return 1
    except RunLocked as e:
        print(f"skipped: {e}", file=sys.stderr)
        return 4
    except Preempted as e:
        print(f"stopped by {e}; checkpoint written, run the same command to continue",
              file=sys.stderr)
        return 3
    for r in runs:
        print(f"{r.store.path}: {results.get(r.cfg.seed, 'failed (see its status.json)')}")
    return 0 if len(results) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
