"""Run settings, `key=value` overrides of nested dataclass configs, and stable run ids.

A run is (agent config, run config, task, seed). Overrides use flat dotted keys over both
configs (`critic.width=128`, `utd=4`, `eval_every=20000`); every key and value is checked
against the dataclass fields' types before anything starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from agents.base import check_settings, setting
from harness.cli import UsageError, check_output_dir, suggest

OPERATIONAL = {"operational": True}  # field metadata: does not change results, not in the run id
SEED_MAX = 2**31 - 1          # seeds feed numpy and JAX PRNG keys
MIN_BUFFER = 1000             # a smaller replay buffer cannot hold a useful sample


@dataclass(frozen=True)
class RunConfig:
    """How one run is driven; defaults follow the paper's protocol (docs/tasks.md)."""

    task: str = "cartpole-balance"      # benchmark task (any published spelling; required by harness.run)
    seed: int = setting(0, low=0, high=SEED_MAX)  # run seed: agent, replay, warm-up and env seeds derive from it
    frames: int = setting(1_000_000, low=1)  # budget in env frames (agent steps x action repeat)
    exp: str = field(default="default", metadata=OPERATIONAL)   # experiment name (method label)
    root: str = field(default="runs", metadata=OPERATIONAL)     # run-store root directory
    agent: str = "simbav2"              # a registered agent (simbav2, sac, simba, crossq) or an import path pkg.module:Agent
    warmup_steps: int = setting(5000, low=0)  # random-action transitions before learning starts
    buffer_size: int = setting(1_000_000, low=MIN_BUFFER)  # replay capacity in transitions (also >= warmup_steps and batch_size)
    eval_every: int = setting(0, low=0)  # env frames between evaluations; 0 = 50,000 agent steps
    eval_episodes: int = setting(10, low=1, high=10_000)  # deterministic episodes per evaluation
    update_block: int = setting(0, low=0, high=100_000)  # gradient updates per fused call (k); 0 = updates due per agent step
    log_every: int = setting(10_000, low=1, metadata=OPERATIONAL)  # env frames between training-metric rows
    metrics_every: int = setting(0, low=-1, metadata=OPERATIONAL)  # env frames between norm/ELR metrics; 0 = 50,000 agent steps, -1 = never
    checkpoint_every: int = setting(100_000, low=0, metadata=OPERATIONAL)  # env frames between checkpoints; 0 = only on signals and at the end
    progress: str = setting("auto", choices=("auto", "bar", "lines", "none"), metadata=OPERATIONAL)  # auto | bar | lines | none

    def validate(self) -> None:
        """Every declared range (the same checker as the agents' configs), then the rules
        between settings; raises UsageError naming the setting, the value and what is valid."""
        try:
            check_settings(self)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.buffer_size < self.warmup_steps:
            raise UsageError(f"bad value {self.buffer_size} for buffer_size: must be >= "
                             f"warmup_steps ({self.warmup_steps}), or learning never starts")
        if not self.exp.strip() or self.exp.startswith("/") or ".." in self.exp.split("/"):
            raise UsageError(f"bad value {self.exp!r} for exp: must be a relative name (no "
                             "leading /, no ..) under root")


def check_pair(run_cfg: RunConfig, agent_cfg) -> None:
    """Rules between run and agent settings."""
    batch = getattr(agent_cfg, "batch_size", 0)
    if run_cfg.buffer_size < batch:
        raise UsageError(f"bad value {run_cfg.buffer_size} for buffer_size: must be >= "
                         f"batch_size ({batch})")


# -- typed dotted overrides of nested frozen dataclasses ------------------------------------

def flat_fields(cfg, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{'critic.width': (type, current value), ...} for every leaf field of a dataclass."""
    hints = typing.get_type_hints(type(cfg))
    out: dict[str, tuple[Any, Any]] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            out.update(flat_fields(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = (hints[f.name], value)
    return out


def _type_name(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args:
        return " or ".join(_type_name(a) for a in args) + (
            " or none" if type(None) in typing.get_args(tp) else "")
    return getattr(tp, "__name__", str(tp))


def parse_value(key: str, text: str, tp):
    """Convert command-line text to the field type `tp` (int, float, bool, str, X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if type(None) in options and text.lower() in ("none", "null", ""):
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return parse_value(key, text, opt)
            except UsageError:
                pass
        raise UsageError(f"bad value {text!r} for {key}: expected {_type_name(tp)}")
    try:
        if tp is bool:
            low = text.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return parse_int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
    except ValueError:
        forms = " (e.g. 1000000, 1_000_000, 1e6, 1M, 500k)" if tp is int else ""
        raise UsageError(f"bad value {text!r} for {key}: expected {_type_name(tp)}"
                         f"{forms}") from None
    raise UsageError(f"{key} cannot be set from the command line")


_SUFFIX = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_int(text: str) -> int:
    """An integer setting from the command line, in every form a frame count is written:
    `1000000`, `1_000_000`, `1e6`, `1M`, `500k`, `2.5m` (k = 10^3, M = 10^6, G = 10^9, any
    case). Raises ValueError when the text is not a whole number."""
    t = text.strip().replace("_", "").lower()
    mult = 1
    if t[-1:] in _SUFFIX:
        t, mult = t[:-1], _SUFFIX[t[-1]]
    if not t or t.startswith(("0x", "+0x", "-0x")) or t in ("inf", "-inf", "+inf", "nan"):
        raise ValueError(text)
    try:
        return int(t) * mult
    except ValueError:
        pass
    f = float(t) * mult
    if not math.isfinite(f) or not f.is_integer():
        raise ValueError(text)
    return int(f)


def override(cfg, values: dict[str, Any]):
    """A copy of dataclass `cfg` with dotted keys set; values are already typed."""
    nested: dict[str, dict] = {}
    direct: dict[str, Any] = {}
    for key, v in values.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = v
        else:
            direct[head] = v
    for head, sub in nested.items():
        direct[head] = override(getattr(cfg, head), sub)
    return replace(cfg, **direct)


def apply_overrides(cfg, given: dict[str, str], valid: dict[str, tuple[Any, Any]] | None = None):
    """Parse and apply {'critic.width': '128'}; unknown keys and bad values raise UsageError."""
    valid = flat_fields(cfg) if valid is None else valid
    typed = {}
    for key, text in given.items():
        if key not in valid:
            raise UsageError(f"unknown key {key!r}{suggest(key, valid)}")
        typed[key] = parse_value(key, text, valid[key][0])
    try:
        return override(cfg, typed)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls, data: dict):
    """Rebuild a (nested) frozen dataclass from `to_dict` output."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        kwargs[f.name] = from_dict(hints[f.name], v) if is_dataclass(hints[f.name]) else v
    return cls(**kwargs)


def run_id(agent_cfg, run_cfg: RunConfig, task: str) -> str:
    """Stable id of what determines a run's results: agent config, result-relevant run
    settings, canonical task and seed. Not time, paths, job ids or logging cadences."""
    relevant = {f.name: getattr(run_cfg, f.name) for f in fields(run_cfg)
                if not f.metadata.get("operational")}
    relevant["task"] = task
    payload = json.dumps({"agent": to_dict(agent_cfg), "run": relevant}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# -- the command-line namespace of one run: run settings + the chosen agent's settings --------

def agent_config_class(name: str):
    """The Config class of a registered agent or an agent given by import path."""
    from agents.base import AgentError, load_agent

    try:
        return load_agent(name).Config
    except AgentError as e:
        raise UsageError(str(e)) from None


def valid_keys(agent: str) -> dict[str, tuple[Any, Any]]:
    """Every settable key for a run of `agent`: run settings and agent settings (flat, dotted)."""
    run_keys = flat_fields(RunConfig())
    agent_keys = flat_fields(agent_config_class(agent)())
    clash = set(run_keys) & set(agent_keys)
    assert not clash, f"run and agent settings share names: {clash}"
    return {**run_keys, **agent_keys}


def build(given: dict[str, str]):
    """(RunConfig, agent config) from `key=value` strings; raises UsageError naming the key."""
    agent = given.get("agent", RunConfig.agent)
    keys = valid_keys(agent)
    for key in given:
        if key not in keys:
            raise UsageError(f"unknown key {key!r}{suggest(key, keys)}; valid keys: "
                             f"{', '.join(sorted(keys))}")
    run_given = {k: v for k, v in given.items() if k in flat_fields(RunConfig())}
    agent_given = {k: v for k, v in given.items() if k not in run_given}
    run_cfg = apply_overrides(RunConfig(), run_given, keys)
    agent_cfg = apply_overrides(agent_config_class(agent)(), agent_given, keys)
    run_cfg.validate()
    check_pair(run_cfg, agent_cfg)
    check_output_dir("root", run_cfg.root)
    from suites import RegistryError, canonical_name

    try:
        run_cfg = replace(run_cfg, task=canonical_name(run_cfg.task))
    except RegistryError as e:
        raise UsageError(str(e)) from None
    return run_cfg, agent_cfg


def settings_help(*agents: str) -> str:
    """Every run setting and every setting of each agent, one line each: key, default, meaning
    (from the config classes' field comments)."""
    from agents.base import agent_label, config_help

    sections = [("run settings", RunConfig())] + [
        (f"agent settings ({agent_label(a)})", agent_config_class(a)()) for a in agents]
    lines = []
    for title, cfg in sections:
        rows = config_help(cfg)
        width = max(len(k) for k, _, _ in rows) + 2
        lines += ["", f"{title}:"]
        for key, default, text in rows:
            shown = "none" if default is None else str(default)
            lines.append(f"  {key + '=' + shown:{width + 12}s} {text}")
    return "\n".join(lines)
