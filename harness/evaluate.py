"""Evaluation: deterministic episodes on separately seeded envs, all stepped together."""

from __future__ import annotations

import numpy as np

from harness.envpool import step_all


def evaluate(envs, policy, normalize, first_episode: int) -> dict[str, float]:
    """Run one episode on each env in `envs` (episode numbers first_episode + i, so every
    evaluation is reproducible on its own) with `policy(obs_batch (n, O) float32) -> (n, A)`.
    Returns avg_return and, where the domain defines success, avg_success: the fraction of
    episodes in which success was reported at any step (the paper's rule)."""
    n = len(envs)
    obs = np.stack([env.reset_to_episode(first_episode + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(n)
    success = np.zeros(n, bool)
    has_success = False
    live = np.ones(n, bool)
    while live.any():
        # the whole batch every time: one compiled shape, finished envs' actions are ignored
        actions = np.asarray(policy(normalize(obs)))
        idx = np.flatnonzero(live)
        # envs in a harness.envpool step at the same time
        for i, (o, r, term, trunc, info) in zip(idx, step_all([envs[i] for i in idx],
                                                              actions[idx])):
            obs[i] = o
            returns[i] += r
            if "success" in info:
                has_success = True
                success[i] |= info["success"]
            if term or trunc:
                live[i] = False
    out = {"avg_return": float(returns.mean())}
    if has_success:
        out["avg_success"] = float(success.mean())
    return out
