"""The agent contract, in one place, and the registry of agents (data, not if/elif).

An agent is any object with the attributes below: a module (`agents.simbav2`), or a class or
namespace reached by an import path (`my_pkg.my_module:MyAgent`). `load_agent` checks them.

Required
  Config                          a frozen dataclass extending `BaseConfig` (batch size, update
                                  rate, choices); one comment or docstring line per field,
                                  which `--help` prints (`config_help`)
  init(config, spec, seed)        -> state: the whole learner state as one pytree (jit-able,
                                  host-independent; config and spec may be static fields)
  act(state, obs, key, deterministic=False)
                                  obs (B, obs_dim) float32, normalised when the agent has an
                                  observation normaliser -> actions (B, act_dim) in [-1, 1]
  update(state, block)            -> (state, metrics): k gradient updates on a block whose
                                  leaves are (k, batch, ...): obs/next_obs (k, B, O) float32,
                                  action (k, B, A), reward (k, B) (scaled when the agent has a
                                  reward scaler), terminated (k, B) in {0, 1}. metrics: a flat
                                  dict of device scalars named `group/name`, averaged over the
                                  k updates, including `health/finite` (bool: every loss was
                                  finite). Must compile once per (config, spec, k).
  networks(state)                 -> {"actor": params, "critic": params, ...}: the trainable
                                  parameter trees, for parameter counts (one critic = the
                                  whole critic ensemble; `critic_heads` says how many)
Optional (the runner does without them)
  normalizers(config, spec)       -> (ObservationNormalizer | None, RewardScaler | None):
                                  host-side float64 statistics (protocols below)
  stability_metrics(state, batch) -> {name: device scalar} on one (B, ...) batch, named by
                                  the scheme in `agents.stability` (`critic/encoder/featnorm`)
  critic_heads(config, spec)      -> int, critics in the ensemble (default 1)

Scaling facts (`scale_facts`) are derived from the contract, never from an agent's private
config keys: parameter counts from `networks`, the widths that define the size from
`Config.size()`, FLOPs per update from XLA's cost analysis of the lowered `update`, and the
update rate from `BaseConfig.frame_update_rate`. The runner writes them to each run's
config.json under `scale`; analysis reads only that key for its scaling and compute figures.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import math
import re
import textwrap
import tokenize
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

# registered name -> import path (a module or `module:attribute`)
AGENTS: dict[str, str] = {
    "simbav2": "agents.simbav2",
    "sac": "agents.sac",
    "simba": "agents.simba",
    "crossq": "agents.crossq",
}

REQUIRED = ("Config", "init", "act", "update", "networks")
OPTIONAL = ("normalizers", "stability_metrics", "critic_heads")


class AgentError(ValueError):
    """An agent name or path that cannot be loaded, or an object that breaks the contract."""


@dataclass(frozen=True)
class AgentSpec:
    """Task facts an agent is built for."""

    obs_dim: int          # observation dimension
    act_dim: int          # action dimension (actions in [-1, 1])
    discount: float       # gamma
    episodic: bool        # the domain has real terminals (clipped double-Q switches on this)
    total_updates: int    # gradient updates planned for the run (length of the LR decay)


# -- declared valid values: one mechanism for run, agent and launch settings ---------------

@dataclass(frozen=True)
class Valid:
    """What a setting accepts: a numeric range (bounds inclusive unless said otherwise) and/or
    a tuple of choices. `None` (an unset optional setting) is always accepted."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple | None = None

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return (f"in {'[' if self.low_inclusive else '('}{lo}, {hi}"
                    f"{']' if self.high_inclusive else ')'}")
        if lo is not None:
            return f"{'>=' if self.low_inclusive else '>'} {lo}"
        if hi is not None:
            return f"{'<=' if self.high_inclusive else '<'} {hi}"
        return "any value"

    def check(self, key: str, value) -> None:
        """Raise ValueError `bad value V for KEY: must be ...` when `value` is not valid."""
        if value is None:
            return
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"bad value {value!r} for {key}: must be {self.describe()}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"bad value {value!r} for {key}: must be a finite number "
                             f"{self.describe()}")
        lo, hi = self.low, self.high
        ok = ((lo is None or (value >= lo if self.low_inclusive else value > lo))
              and (hi is None or (value <= hi if self.high_inclusive else value < hi)))
        if not ok:
            raise ValueError(f"bad value {value!r} for {key}: must be {self.describe()}")


def setting(default, *, low=None, high=None, low_inclusive=True, high_inclusive=True,
            choices=None, **field_kw):
    """A dataclass field that declares its valid values where it is defined:
    `width: int = setting(512, low=1)`, `tau: float = setting(0.005, low=0, low_inclusive=False,
    high=1)`, `cdq: str = setting("auto", choices=("auto", "on", "off"))`. Other keywords
    (metadata=...) go to `dataclasses.field`. `check_settings` checks every declared one."""
    valid = Valid(low, high, low_inclusive, high_inclusive,
                  tuple(choices) if choices is not None else None)
    metadata = {**(field_kw.pop("metadata", None) or {}), "valid": valid}
    return field(default=default, metadata=metadata, **field_kw)


def valid_of(cfg, name: str) -> Valid | None:
    """The declared `Valid` of field `name` of dataclass `cfg` (None when it declares none)."""
    for f in fields(cfg):
        if f.name == name:
            return f.metadata.get("valid")
    return None


def check_settings(cfg, prefix: str = "") -> None:
    """Check every declared range/choice of dataclass `cfg`, nested dataclass fields included
    (named `critic.width`), and every `ORDERED` pair (a < b); raise ValueError naming the
    setting, the value and what is valid."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            check_settings(value, f"{prefix}{f.name}.")
            continue
        valid = valid_of(cfg, f.name)
        if valid is not None:
            valid.check(prefix + f.name, value)
    for lo, hi in getattr(cfg, "ORDERED", ()):
        a, b = getattr(cfg, lo), getattr(cfg, hi)
        if a is not None and b is not None and not a < b:
            raise ValueError(f"bad value {a!r} for {prefix}{lo}: must be < {prefix}{hi} ({b!r})")


@dataclass(frozen=True)
class BaseConfig:
    """Settings every agent has. Subclasses add fields (with defaults), declare each field's
    valid values with `setting(...)`, may list
    ORDERED pairs (a, b) that must satisfy a < b, and may set DEFAULT_UPDATES_PER_FRAME."""

    batch_size: int = setting(256, low=1, high=1_000_000)  # transitions per gradient update
    updates_per_frame: float | None = setting(None, low=0, low_inclusive=False, high=1000)  # gradient updates per environment frame (unset: the agent's default)
    utd: float | None = setting(None, low=0, low_inclusive=False, high=2000)  # the paper's "UTD k" = k/2 updates per env frame (k per agent step at repeat 2)

    ORDERED: ClassVar[tuple[tuple[str, str], ...]] = ()
    DEFAULT_UPDATES_PER_FRAME: ClassVar[float] = 1.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the setting, the value and what is valid: every declared
        range and choice (nested networks included), then the cross-field rules."""
        check_settings(self)
        upf, utd = self.updates_per_frame, self.utd
        if upf is not None and utd is not None and abs(upf - utd / 2) > 1e-12:
            raise ValueError(f"updates_per_frame={upf} and utd={utd} disagree (utd k means k/2 "
                             "updates per frame); set one of them")
        if not self.frame_update_rate > 0 or not math.isfinite(self.frame_update_rate):
            raise ValueError("updates_per_frame / utd must be positive")

    @property
    def frame_update_rate(self) -> float:
        """Gradient updates per environment frame (both conventions resolved)."""
        if self.updates_per_frame is not None:
            return float(self.updates_per_frame)
        if self.utd is not None:
            return float(self.utd) / 2.0
        return float(self.DEFAULT_UPDATES_PER_FRAME)

    def size(self) -> dict[str, int]:
        """The widths that define this agent's size: {"width": the critic's (the scaling
        axis), "depth": the critic's, "<net>.width": ... for every nested network config}.
        The default reads nested dataclass fields named width/depth; override it when an
        agent's size is defined otherwise."""
        out: dict[str, int] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if is_dataclass(v):
                for k in ("width", "depth"):
                    if hasattr(v, k):
                        out[f"{f.name}.{k}"] = int(getattr(v, k))
        for k in ("width", "depth"):
            if f"critic.{k}" in out:
                out[k] = out[f"critic.{k}"]
        return out


# -- host-side statistics the runner drives (optional parts of an agent) --------------------

@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> dict:
        """A pytree of numpy arrays / floats, saved in checkpoints."""

    def load_state_dict(self, d: dict) -> None:
        """Restore exactly what `state_dict` returned."""


@runtime_checkable
class ObservationNormalizer(Stateful, Protocol):
    def update_one(self, obs: np.ndarray) -> None:
        """One raw training observation (obs_dim,); never called during evaluation."""

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Raw (..., obs_dim) -> float32 (..., obs_dim) with the current statistics."""


@runtime_checkable
class RewardScaler(Stateful, Protocol):
    def update(self, reward: float, terminated: bool, truncated: bool) -> None:
        """One training transition's reward and flags."""

    @property
    def scale(self) -> float:
        """Replay rewards are divided by this at sampling time."""


@runtime_checkable
class Agent(Protocol):
    """What `load_agent` returns (see the module docstring for shapes and units)."""

    Config: type

    def init(self, config, spec: AgentSpec, seed: int) -> Any: ...

    def act(self, state, obs, key, deterministic: bool = False) -> Any: ...

    def update(self, state, block: dict) -> tuple[Any, dict]: ...

    def networks(self, state) -> dict: ...


# -- loading by name or path ----------------------------------------------------------------

_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


def is_path(name: str) -> bool:
    """True for `pkg.module:Attr` / `pkg.module` (anything not a registered name)."""
    return name not in AGENTS and ("." in name or ":" in name)


def _import(path: str):
    module_name, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise AgentError(f"cannot import agent module {module_name!r} ({e}); is its package on "
                         "PYTHONPATH (or installed)?") from None
    for part in attr.split(".") if attr else ():
        if not hasattr(obj, part):
            raise AgentError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_agent(name: str) -> Agent:
    """A registered name (`simbav2`) or an import path (`my_pkg.my_module:MyAgent`) -> the
    agent object, checked against the contract. Raises AgentError with the valid names."""
    if name in AGENTS:
        obj = _import(AGENTS[name])
    elif is_path(name) and _PATH_RE.match(name):
        obj = _import(name)
    else:
        from harness.cli import suggest

        raise AgentError(f"unknown agent {name!r}{suggest(name, AGENTS)}; valid: "
                         f"{', '.join(AGENTS)}, or an import path such as "
                         "my_pkg.my_module:MyAgent")
    check_contract(obj, name)
    return obj


def check_contract(obj, name: str = "agent") -> None:
    missing = [a for a in REQUIRED if not hasattr(obj, a)]
    if missing:
        raise AgentError(f"agent {name!r} lacks {', '.join(missing)}: an agent needs "
                         f"{', '.join(REQUIRED)} (see agents/base.py)")
    cfg = obj.Config
    if not (isinstance(cfg, type) and issubclass(cfg, BaseConfig) and is_dataclass(cfg)):
        raise AgentError(f"agent {name!r}: Config must be a dataclass extending "
                         "agents.base.BaseConfig")
    for a in REQUIRED[1:] + OPTIONAL:
        if hasattr(obj, a) and not callable(getattr(obj, a)):
            raise AgentError(f"agent {name!r}: {a} must be callable")


def agent_label(name: str) -> str:
    """A short, path-safe label: the registered name, or the last part of an import path
    (`my_pkg.my_module:MyAgent` -> `MyAgent`)."""
    if name in AGENTS:
        return name
    return re.split(r"[:.]", name)[-1] or name


def normalizers(agent: Agent, config, spec: AgentSpec):
    """(observation normaliser | None, reward scaler | None), checked against the protocols."""
    if not hasattr(agent, "normalizers"):
        return None, None
    obs, rew = agent.normalizers(config, spec)
    if obs is not None and not isinstance(obs, ObservationNormalizer):
        raise AgentError("normalizers()[0] must have update_one, normalize, state_dict and "
                         "load_state_dict")
    if rew is not None and not isinstance(rew, RewardScaler):
        raise AgentError("normalizers()[1] must have update, scale, state_dict and "
                         "load_state_dict")
    return obs, rew


def critic_heads(agent: Agent, config, spec: AgentSpec) -> int:
    return int(agent.critic_heads(config, spec)) if hasattr(agent, "critic_heads") else 1


# -- scaling facts --------------------------------------------------------------------------

def example_block(spec: AgentSpec, batch: int, k: int = 1) -> dict:
    """Shape/dtype stand-ins of a (k, batch, ...) update block."""
    import jax
    import jax.numpy as jnp

    f32 = jnp.float32
    return {"obs": jax.ShapeDtypeStruct((k, batch, spec.obs_dim), f32),
            "action": jax.ShapeDtypeStruct((k, batch, spec.act_dim), f32),
            "reward": jax.ShapeDtypeStruct((k, batch), f32),
            "next_obs": jax.ShapeDtypeStruct((k, batch, spec.obs_dim), f32),
            "terminated": jax.ShapeDtypeStruct((k, batch), f32)}


def count_params(tree) -> int:
    import jax

    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def flops_per_update(agent: Agent, config, spec: AgentSpec, state=None) -> float:
    """FLOPs of one gradient update from XLA's cost analysis of `update` lowered on a k = 1
    block (traced, not compiled). NaN when the backend gives no estimate."""
    import jax

    if state is None:
        state = jax.eval_shape(lambda: agent.init(config, spec, 0))
    lowered = jax.jit(lambda s, b: agent.update(s, b)).lower(
        state, example_block(spec, config.batch_size))
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    try:
        return float((cost or {}).get("flops", math.nan))
    except (TypeError, ValueError):
        return math.nan


def scale_facts(agent: Agent, config, spec: AgentSpec) -> dict:
    """The agent-independent size record written to config.json["scale"]:
    width/depth (the critic's, the scaling axis), widths (every network's), params per
    network and in total (critic = the whole ensemble; critic_per_head = one critic, as the
    paper's parameter-scaling figure counts), flops_per_update (XLA estimate, one update),
    updates_per_frame and utd_paper (= 2 x updates_per_frame)."""
    import jax

    state = jax.eval_shape(lambda: agent.init(config, spec, 0))
    params = {k: count_params(v) for k, v in agent.networks(state).items()}
    heads = critic_heads(agent, config, spec)
    size = config.size()
    rate = config.frame_update_rate
    out = {"width": size.get("width"), "depth": size.get("depth"),
           "widths": {k: v for k, v in size.items() if k not in ("width", "depth")},
           "params": {**params, "total": int(sum(params.values()))},
           "critic_heads": heads,
           "flops_per_update": flops_per_update(agent, config, spec, state),
           "updates_per_frame": rate, "utd_paper": 2 * rate}
    if "critic" in params:
        out["params"]["critic_per_head"] = params["critic"] // max(heads, 1)
    return out


# -- one help line per setting --------------------------------------------------------------

def _class_field_docs(cls) -> dict[str, str]:
    """{field: text} from a dataclass body: the trailing `# comment` on a field's line, or a
    string literal on the line after it (CleanRL style)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments.setdefault(tok.start[0], tok.string.lstrip("#").strip())
    body = ast.parse(src).body[0].body
    out: dict[str, str] = {}
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
            nxt = body[i + 1] if i + 1 < len(body) else None
            if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                out[name] = " ".join(nxt.value.value.split())
            elif node.end_lineno in comments:
                out[name] = comments[node.end_lineno]
    return out


def field_docs(cls) -> dict[str, str]:
    """One help line per field of dataclass `cls`, base classes included (a subclass's line
    wins)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if is_dataclass(klass):
            out.update(_class_field_docs(klass))
    return out


def config_help(cfg, prefix: str = "", ranges: bool = True) -> list[tuple[str, Any, str]]:
    """[(dotted key, default, help line)] for every leaf setting of a config instance; the
    help line ends with the setting's declared valid values (`[valid: >= 1]`)."""
    docs = field_docs(type(cfg))
    rows = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if is_dataclass(v):
            head = docs.get(f.name, "")
            for k, d, h in config_help(v, f"{prefix}{f.name}.", ranges=False):
                text = f"{head}: {h}" if head and h else h or head
                rows.append((k, d, text + _valid_note(v, k.rpartition(".")[2])))
        else:
            text = docs.get(f.name, "")
            rows.append((prefix + f.name, v, text + (_valid_note(cfg, f.name) if ranges else "")))
    return rows


def _valid_note(cfg, name: str) -> str:
    valid = valid_of(cfg, name)
    return f" [valid: {valid.describe()}]" if valid is not None else ""

