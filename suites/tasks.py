"""The paper's 57 tasks and every constant attached to them, as data (one place, no logic).

Sources: docs/tasks.md (per-family settings, task ids and obs/act dims, normalisation
constants and where they come from). Nothing here is computed; `registry.py` turns it into records.
"""

from __future__ import annotations

# Per environment family: how episodes are run and scored.
#   action_repeat   env frames per agent step (rewards summed, stops at a terminal)
#   episode_frames  time limit in raw env frames (applied before action repeat)
#   episodic        the domain has real terminals; the paper turns clipped double-Q on exactly then
#   metric          the published evaluation metric
#   normaliser      name of the normalisation, for display; the arithmetic is one formula
#                   (R - random) / (reference - random) with per-task constants below
FAMILIES: dict[str, dict] = {
    "mujoco": dict(action_repeat=1, episode_frames=1000, episodic=True,
                   metric="avg_return", normaliser="td3"),
    "dmc": dict(action_repeat=2, episode_frames=1000, episodic=False,
                metric="avg_return", normaliser="return/1000"),
    # TimeLimit(100) on top of MyoSuite's own registered limits (ObjHold 75, PenTwirl 50,
    # KeyTurn 200 -> cut at 100); the discount heuristic always uses 100 (docs/tasks.md).
    "myosuite": dict(action_repeat=2, episode_frames=100, episodic=False,
                     metric="avg_success", normaliser="success"),
    "hbench": dict(action_repeat=2, episode_frames=1000, episodic=True,
                   metric="avg_return", normaliser="hb-success"),
}

# Benchmark domains (the paper's table columns) -> environment family.
DOMAINS: dict[str, str] = {
    "mujoco": "mujoco",
    "dmc-em": "dmc",
    "dmc-hard": "dmc",
    "myosuite": "myosuite",
    "hbench": "hbench",
}

# One row per task:
#   (benchmark id as the published results name it, domain, underlying env id,
#    obs_dim, act_dim, random_score, reference_score)
# random/reference: MuJoCo R_random / R_TD3; DMC None / 1000 (R/1000); MyoSuite None / None
# (the success rate is the score); HumanoidBench R_random / R_success.
TASK_ROWS: list[tuple] = [
    # Gym MuJoCo v4 (TD3-normalised)
    ("HalfCheetah-v4", "mujoco", "HalfCheetah-v4", 17, 6, -289.415, 10574.0),
    ("Hopper-v4", "mujoco", "Hopper-v4", 11, 3, 18.791, 3226.0),
    ("Walker2d-v4", "mujoco", "Walker2d-v4", 17, 6, 2.791, 3946.0),
    ("Ant-v4", "mujoco", "Ant-v4", 27, 8, -70.288, 3942.0),
    ("Humanoid-v4", "mujoco", "Humanoid-v4", 376, 17, 120.423, 5165.0),
    # DeepMind Control, easy/medium (21)
    ("acrobot-swingup", "dmc-em", "acrobot-swingup", 6, 1, None, 1000.0),
    ("ball_in_cup-catch", "dmc-em", "ball_in_cup-catch", 8, 2, None, 1000.0),
    ("cartpole-balance", "dmc-em", "cartpole-balance", 5, 1, None, 1000.0),
    ("cartpole-balance_sparse", "dmc-em", "cartpole-balance_sparse", 5, 1, None, 1000.0),
    ("cartpole-swingup", "dmc-em", "cartpole-swingup", 5, 1, None, 1000.0),
    ("cartpole-swingup_sparse", "dmc-em", "cartpole-swingup_sparse", 5, 1, None, 1000.0),
    ("cheetah-run", "dmc-em", "cheetah-run", 17, 6, None, 1000.0),
    ("finger-spin", "dmc-em", "finger-spin", 9, 2, None, 1000.0),
    ("finger-turn_easy", "dmc-em", "finger-turn_easy", 12, 2, None, 1000.0),
    ("finger-turn_hard", "dmc-em", "finger-turn_hard", 12, 2, None, 1000.0),
    ("fish-swim", "dmc-em", "fish-swim", 24, 5, None, 1000.0),
    ("hopper-hop", "dmc-em", "hopper-hop", 15, 4, None, 1000.0),
    ("hopper-stand", "dmc-em", "hopper-stand", 15, 4, None, 1000.0),
    ("pendulum-swingup", "dmc-em", "pendulum-swingup", 3, 1, None, 1000.0),
    ("quadruped-walk", "dmc-em", "quadruped-walk", 78, 12, None, 1000.0),
    ("quadruped-run", "dmc-em", "quadruped-run", 78, 12, None, 1000.0),
    ("reacher-easy", "dmc-em", "reacher-easy", 6, 2, None, 1000.0),
    ("reacher-hard", "dmc-em", "reacher-hard", 6, 2, None, 1000.0),
    ("walker-stand", "dmc-em", "walker-stand", 24, 6, None, 1000.0),
    ("walker-walk", "dmc-em", "walker-walk", 24, 6, None, 1000.0),
    ("walker-run", "dmc-em", "walker-run", 24, 6, None, 1000.0),
    # DeepMind Control, hard (7)
    ("humanoid-stand", "dmc-hard", "humanoid-stand", 67, 21, None, 1000.0),
    ("humanoid-walk", "dmc-hard", "humanoid-walk", 67, 21, None, 1000.0),
    ("humanoid-run", "dmc-hard", "humanoid-run", 67, 21, None, 1000.0),
    ("dog-stand", "dmc-hard", "dog-stand", 223, 38, None, 1000.0),
    ("dog-walk", "dmc-hard", "dog-walk", 223, 38, None, 1000.0),
    ("dog-run", "dmc-hard", "dog-run", 223, 38, None, 1000.0),
    ("dog-trot", "dmc-hard", "dog-trot", 223, 38, None, 1000.0),
    # MyoSuite (success rate, "solved at any step")
    ("myo-reach", "myosuite", "myoHandReachFixed-v0", 115, 39, None, None),
    ("myo-reach-hard", "myosuite", "myoHandReachRandom-v0", 115, 39, None, None),
    ("myo-pose", "myosuite", "myoHandPoseFixed-v0", 108, 39, None, None),
    ("myo-pose-hard", "myosuite", "myoHandPoseRandom-v0", 108, 39, None, None),
    ("myo-obj-hold", "myosuite", "myoHandObjHoldFixed-v0", 91, 39, None, None),
    ("myo-obj-hold-hard", "myosuite", "myoHandObjHoldRandom-v0", 91, 39, None, None),
    ("myo-key-turn", "myosuite", "myoHandKeyTurnFixed-v0", 93, 39, None, None),
    ("myo-key-turn-hard", "myosuite", "myoHandKeyTurnRandom-v0", 93, 39, None, None),
    ("myo-pen-twirl", "myosuite", "myoHandPenTwirlFixed-v0", 83, 39, None, None),
    ("myo-pen-twirl-hard", "myosuite", "myoHandPenTwirlRandom-v0", 83, 39, None, None),
    # HumanoidBench locomotion, H1 without hands (success-normalised)
    ("h1-walk-v0", "hbench", "h1-walk-v0", 51, 19, 2.377, 700.0),
    ("h1-stand-v0", "hbench", "h1-stand-v0", 51, 19, 10.545, 800.0),
    ("h1-run-v0", "hbench", "h1-run-v0", 51, 19, 2.02, 700.0),
    ("h1-reach-v0", "hbench", "h1-reach-v0", 57, 19, 260.302, 12000.0),
    ("h1-hurdle-v0", "hbench", "h1-hurdle-v0", 51, 19, 2.214, 700.0),
    ("h1-crawl-v0", "hbench", "h1-crawl-v0", 51, 19, 272.658, 700.0),
    ("h1-maze-v0", "hbench", "h1-maze-v0", 51, 19, 106.441, 1200.0),
    ("h1-sit_simple-v0", "hbench", "h1-sit_simple-v0", 51, 19, 9.393, 750.0),
    ("h1-sit_hard-v0", "hbench", "h1-sit_hard-v0", 64, 19, 2.448, 750.0),
    ("h1-balance_simple-v0", "hbench", "h1-balance_simple-v0", 64, 19, 9.391, 800.0),
    ("h1-balance_hard-v0", "hbench", "h1-balance_hard-v0", 77, 19, 9.044, 800.0),
    ("h1-stair-v0", "hbench", "h1-stair-v0", 51, 19, 3.112, 700.0),
    ("h1-slide-v0", "hbench", "h1-slide-v0", 51, 19, 3.191, 700.0),
    ("h1-pole-v0", "hbench", "h1-pole-v0", 51, 19, 20.09, 700.0),
]

# Named suites: a list of task ids and/or other suite names (expanded in order, deduplicated).
SUITES: dict[str, list[str]] = {
    "mujoco": [r[0] for r in TASK_ROWS if r[1] == "mujoco"],
    "dmc-em": [r[0] for r in TASK_ROWS if r[1] == "dmc-em"],
    "dmc-hard": [r[0] for r in TASK_ROWS if r[1] == "dmc-hard"],
    "dmc": ["dmc-em", "dmc-hard"],
    "myosuite": [r[0] for r in TASK_ROWS if r[1] == "myosuite"],
    "hbench": [r[0] for r in TASK_ROWS if r[1] == "hbench"],
    # The paper's scaling-study subset (HB_LOCOMOTION_NOHAND_MINI).
    "hbench-hard": ["h1-walk-v0", "h1-run-v0", "h1-sit_hard-v0", "h1-balance_simple-v0",
                    "h1-stair-v0"],
    "all": ["mujoco", "dmc-em", "dmc-hard", "myosuite", "hbench"],
    # Fast tasks from three domains (episodic + CDQ, one critic, success metric) for demos and CI.
    "smoke": ["Hopper-v4", "cartpole-balance", "myo-reach"],
    # The ~1 GPU-hour fidelity check against the published SimbaV2 curves (docs/fidelity.md).
    # Rule (analysis/fidelity.py), on simbaV2_utd2.csv at 300k frames: mean normalised score at
    # 300k >= 0.8 x its mean at 1M, >= 0.25 above the untrained (frame 0) score, <= 0.95 on
    # the scales capped at 1, a 0.2 gap detectable with 3 seeds vs the 10 published (seed sd
    # <= ~0.076); no HumanoidBench (optional install); at most 2 per domain, smallest sd
    # first. Kept as data: tests/test_fidelity.py checks that the rule applied to the published
    # file still gives exactly this list.
    "fidelity": ["Hopper-v4", "cartpole-swingup", "quadruped-walk", "dog-stand",
                 "myo-obj-hold-hard"],
}

# Extra spellings seen in published results that plain normalisation ("-" -> "_", lower case,
# optional version suffix) does not reach.
ALIASES: dict[str, str] = {
    "cup-catch": "ball_in_cup-catch",
}
