"""Environments in child processes (harness/envpool.py): the same numbers as in-process envs,
errors that say what happened, hosts that outlive no parent, and the auto rule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from harness import envpool
from harness.evaluate import evaluate
from suites import get_task, make_env

TASK = get_task("cheetah-run")


def _actions(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, TASK.act_dim)).astype(np.float32)


def test_remote_envs_step_exactly_like_envs_in_this_process():
    with envpool.EnvPool(2) as pool:
        remote = [pool.make(TASK, s) for s in (3, 4, 5)]   # two share a host
        local = [make_env(TASK, s) for s in (3, 4, 5)]
        for r, l in zip(remote, local):
            assert np.array_equal(r.reset()[0], l.reset()[0])
        for a in _actions(40):
            batch = np.stack([a, -a, a * 0.5])
            for x, y in zip(envpool.step_all(remote, batch), envpool.step_all(local, batch)):
                assert np.array_equal(x[0], y[0]) and x[1:4] == y[1:4] and x[4] == y[4]
        # resume's path: a given episode, then the same actions
        assert np.array_equal(remote[1].reset_to_episode(7)[0], local[1].reset_to_episode(7)[0])
        assert remote[1].episode == local[1].episode == 7
        for a in _actions(5, seed=1):
            assert np.array_equal(remote[1].step(a)[0], local[1].step(a)[0])


def test_evaluation_on_remote_envs_equals_evaluation_here():
    w = np.random.default_rng(0).normal(size=(TASK.obs_dim, TASK.act_dim)) * 0.1

    def policy(obs):
        return np.tanh(obs @ w)

    local = evaluate([make_env(TASK, 9) for _ in range(3)], policy, lambda o: o, 6)
    with envpool.EnvPool(2) as pool:
        remote = evaluate([pool.make(TASK, 9) for _ in range(3)], policy, lambda o: o, 6)
    assert remote == local


def test_a_failing_env_reports_the_hosts_traceback():
    with envpool.EnvPool(1) as pool:
        with pytest.raises(envpool.EnvProcessError, match="unknown task"):
            pool.make(SimpleNamespace(name="no-such-task"), 0)
        env = pool.make(TASK, 0)   # the host survives a failed command
        env.reset()
        with pytest.raises(envpool.EnvProcessError, match="failed"):
            env.step(np.zeros(3, np.float32))   # wrong action size: fails in the host
        assert env.step(np.zeros(TASK.act_dim, np.float32))[0].shape == (TASK.obs_dim,)


def test_a_dead_host_is_an_error_not_a_hang():
    pool = envpool.EnvPool(1)
    env = pool.make(TASK, 0)
    env.reset()
    pool.hosts[0].proc.kill()
    pool.hosts[0].proc.wait()
    with pytest.raises(envpool.EnvProcessError, match="exited"):
        env.step(np.zeros(TASK.act_dim, np.float32))
    pool.close()


def test_hosts_ignore_stop_signals_and_exit_with_their_parent(tmp_path):
    """SLURM signals the whole job: the hosts must live on while the parent checkpoints, and
    go away when it does (even on kill -9)."""
    code = ("import sys, time\nfrom harness import envpool\nfrom suites import get_task\n"
            "pool = envpool.EnvPool(2)\nenvs = [pool.make(get_task('cheetah-run'), s) "
            "for s in (0, 1)]\nprint(' '.join(str(h.proc.pid) for h in pool.hosts), "
            "flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2
    os.killpg(parent.pid, signal.SIGUSR2)  # the parent has no handler: it dies of it
    parent.wait(timeout=30)
    end = time.time() + 30
    while any(_alive(p) for p in pids):
        assert time.time() < end, "environment hosts outlived their parent"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_hosts_survive_a_stop_signal_while_the_parent_lives():
    with envpool.EnvPool(1) as pool:
        env = pool.make(TASK, 0)
        env.reset()
        for s in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
            os.kill(pool.hosts[0].proc.pid, s)
        time.sleep(0.2)
        assert pool.hosts[0].proc.poll() is None
        env.step(np.zeros(TASK.act_dim, np.float32))


@pytest.mark.parametrize("step_s,k,cores,pick", [
    (1e-3, 4, 16, "process"),    # dog-like step, many cores
    (1e-3, 2, 2, "process"),
    (40e-6, 8, 16, "inline"),    # cheetah-like step: round trips cost more than the steps
    (1e-3, 1, 16, "inline"),     # one seed: nothing to overlap
    (1e-3, 8, 1, "inline"),      # one core
])
def test_auto_takes_the_pool_only_where_it_is_estimated_faster(step_s, k, cores, pick):
    assert envpool.choose(TASK, k, "auto", cores=cores, step_s=step_s)[0] == pick
    assert envpool.choose(TASK, k, "inline", cores=cores)[0] == "inline"
    assert envpool.choose(TASK, k, "process", cores=cores)[0] == "process"


def test_auto_measures_the_task_it_is_given():
    mode, facts = envpool.choose(TASK, 2, "auto", cores=4)
    assert 0 < facts["step_s"] < 0.1 and mode in ("inline", "process")


def test_an_unknown_envs_value_names_the_choices():
    with pytest.raises(ValueError, match="auto, inline, process"):
        envpool.choose(TASK, 2, "threads")
