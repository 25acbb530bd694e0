"""Environments in child processes, so that the K seeds of one process (harness/multirun.py)
step their environments in parallel instead of one after the other.

The simulators (MuJoCo under dm_control, MyoSuite, HumanoidBench) hold the GIL for most of a
step, so threads do not help (measured, docs/multiseed.md); processes do, at the price of one
pipe round trip per step. `EnvPool(P)` starts P host processes; `pool.make(task, seed)` creates
a `TaskEnv` on the next host (round robin) and returns a `RemoteEnv`, which has the TaskEnv
methods the harness uses (`reset`, `reset_to_episode`, `step`, `episode`, `close`) plus
`step_async(action)` / `step_wait()`: start every env's step, then collect the results. `step_all(envs, actions)`
does that for any mix of RemoteEnvs and envs in this process, so callers need not know where
an env lives.

Results are bit-identical to stepping in the process (same code, same seeds; arrays cross the
pipe pickled, unchanged). Hosts ignore the stop signals: SLURM's SIGUSR2 / SIGTERM reach
the whole job, and the parent still needs its envs to write the checkpoint; a host exits when
its parent goes away (end of file on its pipe).

Whether a pool pays depends on the step time against the round trip: `choose(task, k)`
measures one step of the task here and decides (`python -m harness.bench envs` measures both).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection

import numpy as np

ENVS = ("auto", "inline", "process")

# What one env step through the pool costs beyond the step itself (pickling, pipes, waking
# the host): `python -m harness.bench envs` on the 2-core machine measured a bare round trip at
# 15-20 us and 60-100 us in use (cheetah-run, Humanoid-v4 at K = 8); the auto rule's estimate.
ROUND_TRIP_S = 60e-6


def usable_cores() -> int:
    """Cores this process may run on (SLURM's cpus-per-task sets the affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def probe_step_seconds(task, steps: int = 30) -> float:
    """Median wall seconds of one agent step of `task` in this process (random actions from
    a fixed generator, on a throwaway env: no run's state is touched)."""
    from suites import make_env

    env = make_env(task, seed=0)
    rng = np.random.default_rng(0)
    env.reset()
    times = []
    for _ in range(steps):
        a = rng.uniform(-1.0, 1.0, task.act_dim).astype(np.float32)
        t0 = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        times.append(time.perf_counter() - t0)
        if term or trunc:
            env.reset()
    env.close()
    return float(np.median(times))


def estimate(step_s: float, k: int, cores: int, round_trip_s: float = ROUND_TRIP_S) -> dict:
    """Seconds per agent step spent stepping K envs: in the process (K steps one after the
    other) and in a pool of min(K, cores) hosts (K round trips, ceil(K / hosts) steps deep)."""
    hosts = max(1, min(k, cores))
    return {"inline": k * step_s,
            "process": k * round_trip_s + math.ceil(k / hosts) * step_s}


def choose(task, k: int, envs: str = "auto", cores: int | None = None,
           step_s: float | None = None) -> tuple[str, dict]:
    """("inline" | "process", the facts behind it). auto takes a pool when it is estimated at
    least 1.25x faster than stepping in the process (K = 1 never is)."""
    if envs not in ENVS:
        raise ValueError(f"unknown envs {envs!r}; valid: {', '.join(ENVS)}")
    cores = cores or usable_cores()
    if envs != "auto":
        return envs, {"cores": cores}
    if k < 2 or cores < 2:
        return "inline", {"cores": cores, "k": k}
    step_s = probe_step_seconds(task) if step_s is None else step_s
    est = estimate(step_s, k, cores)
    pick = "process" if est["process"] * 1.25 < est["inline"] else "inline"
    return pick, {"cores": cores, "k": k, "step_s": step_s, **{f"{n}_s": v
                                                                 for n, v in est.items()}}


# -- the parent's side ----------------------------------------------------------------------
class EnvProcessError(RuntimeError):
    """An environment host failed (the traceback from the host is in the message) or died."""


class _Host:
    """One child process and its two pipes. Replies come back in request order; each
    request's reply is matched by a ticket, so several envs on one host can be in flight."""

    def __init__(self, index: int):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        # the repository on the path whatever the working directory (it need not be installed)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.envpool", str(cmd_r), str(res_w)],
            pass_fds=(cmd_r, res_w), stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path})
        os.close(cmd_r)
        os.close(res_w)
        self.index = index
        self.out = Connection(cmd_w, readable=False)
        self.inp = Connection(res_r, writable=False)
        self.sent = 0          # tickets issued
        self.received = 0      # replies read
        self.replies: dict[int, object] = {}

    def send(self, *msg) -> int:
        try:
            self.out.send(msg)
        except (BrokenPipeError, OSError) as e:
            raise self._died() from e
        self.sent += 1
        return self.sent - 1

    def wait(self, ticket: int):
        while ticket not in self.replies:
            try:
                reply = self.inp.recv()
            except (EOFError, OSError) as e:
                raise self._died() from e
            self.replies[self.received] = reply
            self.received += 1
        ok, value = self.replies.pop(ticket)
        if not ok:
            raise EnvProcessError(f"environment process {self.index} failed:\n{value}")
        return value

    def call(self, *msg):
        return self.wait(self.send(*msg))

    def _died(self) -> EnvProcessError:
        code = self.proc.poll()
        return EnvProcessError(f"environment process {self.index} (pid {self.proc.pid}) "
                               f"exited{'' if code is None else f' with code {code}'}")

    def close(self, timeout: float = 10.0) -> None:
        for c in (self.out, self.inp):
            try:
                c.close()
            except OSError:
                pass
        try:  # end of file on its pipe: it exits
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class RemoteEnv:
    """A TaskEnv living in a host process (see the module docstring)."""

    def __init__(self, host: _Host, task, seed: int):
        self._host = host
        self.task = task
        self._id = host.call("make", task.name, int(seed))
        self._ticket: int | None = None

    def reset(self):
        return self._host.call("reset", self._id)

    def reset_to_episode(self, episode: int):
        return self._host.call("reset_to_episode", self._id, int(episode))

    @property
    def episode(self) -> int:
        return self._host.call("episode", self._id)

    def step_async(self, action) -> None:
        if self._ticket is not None:
            raise RuntimeError("step_async twice without step_wait")
        self._ticket = self._host.send("step", self._id, np.asarray(action))

    def step_wait(self):
        ticket, self._ticket = self._ticket, None
        if ticket is None:
            raise RuntimeError("step_wait without step_async")
        return self._host.wait(ticket)

    def step(self, action):
        self.step_async(action)
        return self.step_wait()

    def close(self) -> None:
        pass  # the env goes with its host (EnvPool.close)


class EnvPool:
    """`processes` host processes; envs are placed on them round robin."""

    def __init__(self, processes: int):
        if processes < 1:
            raise ValueError("an EnvPool needs at least one process")
        self.hosts = [_Host(i) for i in range(processes)]
        self._next = 0

    def make(self, task, seed: int) -> RemoteEnv:
        host = self.hosts[self._next % len(self.hosts)]
        self._next += 1
        return RemoteEnv(host, task, seed)

    def close(self) -> None:
        for h in self.hosts:
            h.close()
        self.hosts = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def step_all(envs, actions) -> list:
    """Step each env with its action: (obs, reward, terminated, truncated, info) per env.
    RemoteEnvs all start before any is waited for; envs in this process step in turn."""
    for env, a in zip(envs, actions):
        if isinstance(env, RemoteEnv):
            env.step_async(a)
    return [env.step_wait() if isinstance(env, RemoteEnv) else env.step(a)
            for env, a in zip(envs, actions)]


# -- the host's side --------------------------------------------------------------------------
def _serve(inp: Connection, out: Connection) -> None:
    from suites import make_env

    envs: list = []
    while True:
        try:
            msg = inp.recv()
        except (EOFError, OSError):
            return  # the parent is gone (or closed us)
        cmd, args = msg[0], msg[1:]
        try:
            if cmd == "make":
                envs.append(make_env(args[0], args[1]))
                value = len(envs) - 1
            elif cmd == "step":
                value = envs[args[0]].step(args[1])
            elif cmd == "reset":
                value = envs[args[0]].reset()
            elif cmd == "reset_to_episode":
                value = envs[args[0]].reset_to_episode(args[1])
            elif cmd == "episode":
                value = envs[args[0]].episode
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply = (True, value)
        except Exception:
            reply = (False, traceback.format_exc())
        try:
            out.send(reply)
        except (BrokenPipeError, OSError):
            return


if __name__ == "__main__":
    # the parent handles stop signals (and checkpoints with our help); we end with its pipe
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, signal.SIG_IGN)
    os.environ.setdefault("MUJOCO_GL", "disable")
    _serve(Connection(int(sys.argv[1]), writable=False),
           Connection(int(sys.argv[2]), readable=False))
