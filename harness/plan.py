"""Planning a launch: `key=value` arguments -> validated, expanded list of runs with their state.

Launch keys: suite= and/or task= (comma lists), agent= (comma list), seeds= (`0-9`, `0,3,7`
or a count `5` meaning 0..4), exp=, root=, backend=local|slurm, workers=, dry_run=, only=,
profile= plus the cluster-profile keys (partition=, gpus_per_job=, ...), `sbatch.<flag>=value`
for extra sbatch flags, and every run or agent setting (`frames=`, `critic.width=`, `utd=`...).
A comma list on a run or agent setting is a sweep: the cartesian product of all sweeps is run,
each point under its own experiment `<exp>/<key>=<value>,...`. With several agents, each
agent's runs go under `<exp>/<agent label>`, and a setting applies to the agents that have it
(a key that no chosen agent has is an error).
Everything is checked before anything is written or submitted.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from agents.base import Valid, agent_label
from harness.cli import UsageError, check_choice, check_output_dir, suggest
from harness.config import (SEED_MAX, RunConfig, agent_config_class, apply_overrides,
                            check_pair, flat_fields, parse_value, run_id, valid_keys)
from harness.store import RunDir, read_json
from suites import RegistryError, Task, is_available, resolve

BACKENDS = ("local", "slurm")
ONLY = ("all", "failed", "unfinished")
PROFILE_KEYS = {"partition": str, "gpus_per_job": int, "cpus_per_task": int, "mem_gb": float,
                "time_min": int, "account": str, "qos": str, "array_parallelism": int,
                "runs_per_job": int, "max_array_size": int}
LAUNCH_KEYS = {"suite", "task", "agent", "seeds", "backend", "workers", "dry_run", "only",
               "profile", "seeds_per_process", "batching", "envs", *PROFILE_KEYS}
PROFILE_DIR = Path(__file__).resolve().parents[1] / "slurm" / "profiles"
MAX_RUNS = 10_000  # runs in one launch (tasks x seeds x agents x sweep points); split bigger ones
# valid values of the numeric launch keys: the same `Valid` the run and agent settings declare
LAUNCH_VALID = {"workers": Valid(low=1, high=1024), "gpus_per_job": Valid(low=0),
                "cpus_per_task": Valid(low=1), "mem_gb": Valid(low=0, low_inclusive=False),
                "time_min": Valid(low=1), "array_parallelism": Valid(low=1),
                "runs_per_job": Valid(low=1), "max_array_size": Valid(low=1),
                "seeds_per_process": Valid(low=1, high=64)}


def check_launch_value(key: str, value):
    try:
        LAUNCH_VALID[key].check(key, value)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return value


@dataclass
class PlannedRun:
    run_cfg: RunConfig
    agent_cfg: object
    point: str                    # sweep point label ("" when there is no sweep)
    task: Task
    run_id: str
    state: str = "new"            # new | resume | running | completed | failed | other-config
    reason: str | None = None
    frames_done: int = 0

    @property
    def store(self) -> RunDir:
        c = self.run_cfg
        return RunDir(c.root, c.exp, c.task, c.seed)

    def args(self, progress: str = "none") -> list[str]:
        """Full `key=value` argument list for `python -m harness.run`."""
        out = [f"progress={progress}"]
        for cfg in (self.run_cfg, self.agent_cfg):
            for key, (_, value) in flat_fields(cfg).items():
                if key == "progress":
                    continue
                text = "none" if value is None else (str(value).lower()
                                                    if isinstance(value, bool) else str(value))
                out.append(f"{key}={text}")
        return out


@dataclass
class Plan:
    runs: list[PlannedRun]
    backend: str
    workers: int
    dry_run: bool
    only: str
    profile: dict = field(default_factory=dict)
    sweep_keys: list[str] = field(default_factory=list)
    seeds_per_process: int = 1    # K: seeds of one (agent, task, config) per process
    process_options: dict = field(default_factory=dict)  # batching=/envs= of K-seed processes

    def selected(self) -> list[PlannedRun]:
        """Runs this launch will start: not completed, not held elsewhere, per `only=`."""
        keep = {"all": ("new", "resume", "failed"), "unfinished": ("new", "resume"),
                "failed": ("failed",)}[self.only]
        return [r for r in self.runs if r.state in keep]

    def processes(self) -> list[list[PlannedRun]]:
        """The selected runs packed into processes: up to `seeds_per_process` seeds of the
        same (agent, task, sweep point, config) each, in plan order."""
        groups: dict[tuple, list[PlannedRun]] = {}
        for r in self.selected():
            key = (r.point, r.task.name, repr(replace(r.run_cfg, seed=0)), repr(r.agent_cfg))
            groups.setdefault(key, []).append(r)
        k = self.seeds_per_process
        return [g[i:i + k] for g in groups.values() for i in range(0, len(g), k)]

    @property
    def processes_per_job(self) -> int:
        """SLURM: `runs_per_job` runs per job, rounded down to whole processes (at least 1)."""
        return max(1, int(self.profile.get("runs_per_job", 1) or 1) // self.seeds_per_process)


def process_args(group: list[PlannedRun], progress: str = "none",
                 options: dict | None = None) -> list[str]:
    """`python -m harness.run` arguments of one process: `seed=` for one run, `seeds=` for
    several (harness/multirun.py), with the plan's `process_options` (batching=, envs=)."""
    args = group[0].args(progress)
    if len(group) == 1:
        return args
    return [a for a in args if not a.startswith("seed=")] + [
        "seeds=" + ",".join(str(r.run_cfg.seed) for r in group)] + [
        f"{k}={v}" for k, v in (options or {}).items()]


def parse_seeds(text: str) -> list[int]:
    """`0-9` (a range), `0,3,7` (a list) or `5` (a count: 0..4); seeds in [0, SEED_MAX], at
    most MAX_RUNS of them."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            if hi < lo:
                raise ValueError
            seeds = range(lo, hi + 1)
        elif "," in text:
            seeds = sorted({int(x) for x in text.split(",") if x.strip()})
        else:
            n = int(text)
            if n <= 0:
                raise ValueError
            seeds = range(n)
    except ValueError:
        raise UsageError(f"bad value {text!r} for seeds: expected a range `0-9`, a list "
                         "`0,3,7` or a count `5` of seeds >= 0") from None
    if len(seeds) > MAX_RUNS:
        raise UsageError(f"bad value {text!r} for seeds: {len(seeds):,} seeds; at most "
                         f"{MAX_RUNS:,} runs per launch (split it into several launches)")
    if not seeds or seeds[0] < 0 or seeds[-1] > SEED_MAX:
        raise UsageError(f"bad value {text!r} for seeds: seeds must be in [0, {SEED_MAX}]")
    return list(seeds)


def _bool(key: str, text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"bad value {text!r} for {key}: expected true or false")


def load_profile(name: str) -> dict:
    import yaml

    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise UsageError(f"unknown cluster profile {name!r}; valid: {', '.join(names)} "
                         f"(in {PROFILE_DIR}) or a path to a .yaml file")
    prof = yaml.safe_load(path.read_text()) or {}
    prof["_path"] = str(path)
    return prof


def _profile_with_overrides(given: dict[str, str]) -> dict:
    prof = load_profile(given.get("profile", "local"))
    for key, tp in PROFILE_KEYS.items():
        if key in given:
            text = given[key]
            if tp is str:
                prof[key] = None if text.lower() in ("none", "null") else text
            else:
                prof[key] = parse_value(key, text, tp)
    extra = dict(prof.get("extra_sbatch") or {})
    # `sbatch.hold=true` -> a bare `--hold` flag
    extra.update({k[len("sbatch."):]: (True if v.lower() == "true" else v)
                  for k, v in given.items() if k.startswith("sbatch.")})
    prof["extra_sbatch"] = extra
    parts = prof.get("partitions") or []
    if parts and prof.get("partition") not in parts:
        raise UsageError(f"unknown partition {prof.get('partition')!r}"
                         f"{suggest(str(prof.get('partition')), parts)}; valid on this cluster "
                         f"profile: {', '.join(parts)}")
    for key in ("runs_per_job", "array_parallelism", "time_min", "max_array_size",
                "gpus_per_job", "cpus_per_task", "mem_gb"):
        if prof.get(key) is not None:
            check_launch_value(key, prof[key])
    return prof


def build_plan(given: dict[str, str]) -> Plan:
    """Validate everything and expand the plan (no file is written)."""
    if "seed" in given:
        raise UsageError("use seeds= (a range 0-9, a list 0,3,7 or a count) with the launcher")
    agents = [a.strip() for a in given.get("agent", RunConfig.agent).split(",") if a.strip()]
    for a in agents:
        agent_config_class(a)  # unknown agent -> UsageError with the valid ones
    labels = [agent_label(a) for a in agents]
    if len(set(labels)) < len(labels) or len(set(agents)) < len(agents):
        raise UsageError(f"agents {', '.join(agents)} share a label ({', '.join(labels)}); each "
                         "agent of a sweep needs its own (its runs go to <exp>/<label>)")
    keys_by_agent = {a: valid_keys(a) for a in agents}
    config_keys = set().union(*keys_by_agent.values()) - {"agent", "seed", "task"}
    for key in given:
        if key in LAUNCH_KEYS or key.startswith("sbatch."):
            continue
        if key not in config_keys:
            valid = sorted(LAUNCH_KEYS | config_keys)
            raise UsageError(f"unknown key {key!r}{suggest(key, valid)}; valid keys: "
                             f"{', '.join(valid)} and sbatch.<flag>")
    backend = check_choice("backend", given.get("backend", "local"), BACKENDS)
    only = check_choice("only", given.get("only", "all"), ONLY)
    dry_run = _bool("dry_run", given.get("dry_run", "false"))
    workers = check_launch_value("workers", parse_value("workers", given["workers"], int)
                                 if "workers" in given else max(1, (os.cpu_count() or 2) // 2))
    profile = _profile_with_overrides(given) if backend == "slurm" else {}

    spec = ",".join(x for x in (given.get("suite", ""), given.get("task", "")) if x) or "smoke"
    try:
        tasks = resolve(spec)
    except RegistryError as e:
        raise UsageError(str(e)) from None
    missing = [t.name for t in tasks if not is_available(t)]
    if missing:
        from suites.envs.humanoid_bench import INSTALL_HINT
        raise UsageError(f"{len(missing)} task(s) need HumanoidBench ({', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}). {INSTALL_HINT}")
    seeds = parse_seeds(given.get("seeds", "1"))

    settings = {k: v for k, v in given.items() if k in config_keys}
    sweep_keys = sorted(k for k, v in settings.items() if "," in v)
    points = sum(math.prod(len(settings[k].split(",")) for k in sweep_keys
                           if k in keys_by_agent[a]) for a in agents)
    total = len(tasks) * len(seeds) * points
    if total > MAX_RUNS:
        raise UsageError(f"the plan has {total:,} runs ({len(tasks)} task(s) x {len(seeds)} "
                         f"seed(s) x {points} agent/sweep point(s)); at most {MAX_RUNS:,} runs "
                         "per launch: split it into several launches")
    runs: list[PlannedRun] = []
    for agent in agents:
        # with several agents, a setting applies to the agents that have it (a key that no
        # chosen agent has was refused above)
        keys = keys_by_agent[agent]
        mine = [k for k in sweep_keys if k in keys]
        choices = [[(k, v.strip()) for v in settings[k].split(",")] for k in mine]
        fixed = {k: v for k, v in settings.items() if k not in sweep_keys and k in keys}
        for combo in itertools.product(*choices) if choices else [()]:
            values = {**fixed, **dict(combo)}
            run_given = {k: v for k, v in values.items() if k in flat_fields(RunConfig())}
            agent_given = {k: v for k, v in values.items() if k not in run_given}
            base_run = apply_overrides(replace(RunConfig(), agent=agent), run_given, keys)
            base_run.validate()
            agent_cfg = apply_overrides(agent_config_class(agent)(), agent_given, keys)
            check_pair(base_run, agent_cfg)
            check_output_dir("root", base_run.root)
            point = ",".join(f"{k}={v}" for k, v in combo)
            exp = base_run.exp + (f"/{agent_label(agent)}" if len(agents) > 1 else "") + (
                f"/{point}" if point else "")
            for task in tasks:
                for seed in seeds:
                    rc = replace(base_run, task=task.name, seed=seed, exp=exp)
                    runs.append(PlannedRun(rc, agent_cfg, point, task,
                                           run_id(agent_cfg, rc, task.name)))
    k = check_launch_value("seeds_per_process",
                           parse_value("seeds_per_process", given.get("seeds_per_process", "1"),
                                       int))
    options = {}
    if {"batching", "envs"} & given.keys():
        from harness.envpool import ENVS
        from harness.multirun import BATCHING

        if k == 1:
            raise UsageError("batching= and envs= apply to several seeds per process "
                             "(seeds_per_process=K with K > 1)")
        for key, choices in (("batching", BATCHING), ("envs", ENVS)):
            if key in given:
                options[key] = check_choice(key, given[key], choices)
    plan = Plan(runs, backend, workers, dry_run, only, profile, sweep_keys, k, options)
    refresh_states(plan)
    return plan


def run_state(store: RunDir, rid: str) -> tuple[str, str | None, int]:
    """(state, reason, frames_done) of a planned run from its directory."""
    cfg = read_json(store.config_path)
    if cfg is None and not store.status_path.exists():
        return "new", None, 0
    if cfg is not None and cfg.get("run_id") != rid:
        return "other-config", f"holds run id {cfg.get('run_id')}", 0
    st = store.status()
    state, done = st.state, int(st.frames_done)
    if state == "completed":
        return "completed", None, done
    if state == "failed":
        return "failed", st.reason, done
    if state == "running" and _held(store):
        return "running", None, done
    return ("resume" if done > 0 or store.checkpoint_dir.exists() else "new",
            st.get("reason"), done)


def _held(store: RunDir) -> bool:
    import fcntl

    lock = store.path / ".lock"
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def refresh_states(plan: Plan) -> None:
    for r in plan.runs:
        r.state, r.reason, r.frames_done = run_state(r.store, r.run_id)
