"""Task records, suite expansion and name canonicalisation over the data in `tasks.py`."""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass

from suites.tasks import ALIASES, DOMAINS, FAMILIES, SUITES, TASK_ROWS


class RegistryError(ValueError):
    """A task or suite name that is not in the registry (the message lists valid choices)."""


def horizon_discount(episode_frames: int, action_repeat: int) -> float:
    """TD-MPC2 heuristic used by the paper: L = frames / repeat agent steps,
    gamma = clip((L/5 - 1) / (L/5), 0.95, 0.995)."""
    horizon = episode_frames / action_repeat / 5.0
    return float(min(max((horizon - 1.0) / horizon, 0.95), 0.995))


@dataclass(frozen=True)
class Task:
    """One benchmark task with everything a run and an analysis need to know about it."""

    name: str                     # canonical benchmark id, as the published results name it
    domain: str                   # mujoco | dmc-em | dmc-hard | myosuite | hbench
    family: str                   # environment family / adapter: mujoco | dmc | myosuite | hbench
    env_id: str                   # id of the underlying environment
    obs_dim: int                  # expected observation dimension (checked against the env)
    act_dim: int                  # expected action dimension
    random_score: float | None    # R_random of the normaliser (None: 0)
    reference_score: float | None # R_TD3 / 1000 / R_success (None: 1, i.e. raw success rate)
    action_repeat: int            # env frames per agent step
    episode_frames: int           # time limit in raw env frames
    episodic: bool                # real terminals: clipped double-Q on (paper: env.episodic)
    metric: str                   # avg_return | avg_success
    normaliser: str               # td3 | return/1000 | success | hb-success

    @property
    def discount(self) -> float:
        return horizon_discount(self.episode_frames, self.action_repeat)

    @property
    def agent_steps_per_episode(self) -> int:
        return -(-self.episode_frames // self.action_repeat)

    def normalise(self, raw):
        """Normalised score (R - random) / (reference - random); works on floats and arrays."""
        low = 0.0 if self.random_score is None else self.random_score
        high = 1.0 if self.reference_score is None else self.reference_score
        return (raw - low) / (high - low)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["discount"] = self.discount
        return d


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _unversioned(key: str) -> str:
    return re.sub(r"_v\d+$", "", key)


def _build() -> tuple[dict[str, Task], dict[str, str]]:
    tasks: dict[str, Task] = {}
    for name, domain, env_id, obs_dim, act_dim, rnd, ref in TASK_ROWS:
        family = DOMAINS[domain]
        tasks[name] = Task(name=name, domain=domain, family=family, env_id=env_id,
                           obs_dim=obs_dim, act_dim=act_dim, random_score=rnd,
                           reference_score=ref, **FAMILIES[family])
    index: dict[str, str] = {}

    def add(spelling: str, name: str) -> None:
        for k in {_key(spelling), _unversioned(_key(spelling))}:
            if index.setdefault(k, name) != name:
                raise AssertionError(f"spelling {spelling!r} is ambiguous: {index[k]} / {name}")

    for t in tasks.values():
        add(t.name, t.name)
        add(t.env_id, t.name)
    for spelling, name in ALIASES.items():
        add(spelling, name)
    return tasks, index


TASKS, _INDEX = _build()
SUITE_NAMES: tuple[str, ...] = tuple(SUITES)


def _closest(name: str, n: int = 5) -> list[str]:
    key = _key(name)
    hits = difflib.get_close_matches(key, list(_INDEX), n=n * 3, cutoff=0.5)
    out: list[str] = []
    for h in hits:
        if _INDEX[h] not in out:
            out.append(_INDEX[h])
    return out[:n]


def canonical_name(name: str) -> str:
    """Map any published spelling (`h1_sit_hard_v0`, `cup-catch`, `HalfCheetah_v4`, ...) to the
    canonical benchmark id. Raises RegistryError naming the closest valid ids."""
    key = _key(str(name))
    hit = _INDEX.get(key) or _INDEX.get(_unversioned(key))
    if hit is None:
        close = _closest(name)
        hint = f"; closest valid names: {', '.join(close)}" if close else ""
        raise RegistryError(f"unknown task {name!r}{hint} (all 57: `python -m suites list`)")
    return hit


def try_canonical_name(name: str) -> str | None:
    """canonical_name, or None for names outside the 57 tasks."""
    try:
        return canonical_name(name)
    except RegistryError:
        return None


def get_task(name: str) -> Task:
    return TASKS[canonical_name(name)]


def resolve(spec: str | list[str]) -> list[Task]:
    """Expand a suite name, a task name or a comma list mixing both into tasks (ordered, unique)."""
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    out: dict[str, Task] = {}

    def expand(item: str, depth: int = 0) -> None:
        item = item.strip()
        if not item:
            return
        if item in SUITES:
            for sub in SUITES[item]:
                expand(sub, depth + 1)
            return
        try:
            t = get_task(item)
        except RegistryError:
            close = _closest(item, 3) + difflib.get_close_matches(item, SUITE_NAMES, n=2)
            raise RegistryError(
                f"unknown task or suite {item!r}; closest: {', '.join(close) or 'none'}; "
                f"suites: {', '.join(SUITE_NAMES)}") from None
        out.setdefault(t.name, t)

    for it in items:
        expand(it)
    if not out:
        raise RegistryError(f"no tasks in {spec!r}; suites: {', '.join(SUITE_NAMES)}")
    return list(out.values())
