"""The task registry: counts, suites, constants (against the spec), normalisers, names."""

from __future__ import annotations

import collections
import re

import pandas as pd
import pytest

from suites import TASKS, RegistryError, canonical_name, get_task, horizon_discount, resolve
from suites.tasks import SUITES


def test_57_tasks_by_domain():
    counts = collections.Counter(t.domain for t in TASKS.values())
    assert counts == {"mujoco": 5, "dmc-em": 21, "dmc-hard": 7, "myosuite": 10, "hbench": 14}
    assert len(resolve("all")) == 57


@pytest.mark.parametrize("suite,n", [("mujoco", 5), ("dmc-em", 21), ("dmc-hard", 7), ("dmc", 28),
                                     ("myosuite", 10), ("hbench", 14), ("hbench-hard", 5)])
def test_suite_sizes(suite, n):
    assert len(resolve(suite)) == n


def test_hbench_hard_members_and_comma_lists():
    assert [t.name for t in resolve("hbench-hard")] == [
        "h1-walk-v0", "h1-run-v0", "h1-sit_hard-v0", "h1-balance_simple-v0", "h1-stair-v0"]
    mixed = resolve("cup-catch, mujoco,Hopper_v4")
    assert [t.name for t in mixed][:2] == ["ball_in_cup-catch", "HalfCheetah-v4"]
    assert len(mixed) == 6  # Hopper once, order kept
    smoke_domains = {t.family for t in resolve("smoke")}
    assert len(smoke_domains) >= 3 and "hbench" not in smoke_domains


def test_family_settings_and_discounts():
    expect = {"mujoco": (1, 1000, True, "avg_return", 0.995),
              "dmc": (2, 1000, False, "avg_return", 0.99),
              "myosuite": (2, 100, False, "avg_success", 0.95),
              "hbench": (2, 1000, True, "avg_return", 0.99)}
    for t in TASKS.values():
        rep, frames, episodic, metric, gamma = expect[t.family]
        assert (t.action_repeat, t.episode_frames, t.episodic, t.metric) == (
            rep, frames, episodic, metric), t.name
        assert t.discount == pytest.approx(gamma), t.name
    # The heuristic itself: L_eff = 50 gives 0.9, clamped up to 0.95; L_eff = 10000 clamps down.
    assert horizon_discount(100, 2) == 0.95
    assert horizon_discount(20000, 1) == 0.995
    assert horizon_discount(250, 1) == pytest.approx(0.98)


def _spec_table(spec_text: str, first_key: str) -> dict[str, tuple[float, float]]:
    """Rows `| task | a | b |` of the spec table that starts with `first_key`."""
    start = spec_text.index(f"| {first_key} |")
    rows = {}
    for line in spec_text[start:].splitlines():
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        nums = [re.match(r"[−-]?[\d.]+", c.replace("−", "-")) for c in cells[1:3]]
        rows[cells[0]] = tuple(float(m.group(0)) for m in nums)
    return rows


def test_normalisation_constants_equal_the_spec(spec_text):
    mujoco = _spec_table(spec_text, "HalfCheetah-v4")
    hb = _spec_table(spec_text, "h1-walk-v0")
    assert len(mujoco) == 5 and len(hb) == 14
    for name, (rnd, ref) in {**mujoco, **hb}.items():
        t = get_task(name)
        assert (t.random_score, t.reference_score) == (rnd, ref), name


def test_normalisation_arithmetic():
    hc = get_task("HalfCheetah-v4")
    assert hc.normalise(-289.415) == 0.0 and hc.normalise(10574.0) == pytest.approx(1.0)
    # Spec §4.8: SimbaV2 UTD2 means and their normalised values.
    assert hc.normalise(12022.4) == pytest.approx(1.133, abs=5e-4)
    assert get_task("h1-walk-v0").normalise(845.6) == pytest.approx(1.209, abs=5e-4)
    assert get_task("h1-reach-v0").normalise(3850.2) == pytest.approx(0.306, abs=5e-4)
    assert get_task("cheetah-run").normalise(920.4) == pytest.approx(0.9204)
    assert get_task("myo-key-turn-hard").normalise(0.62) == pytest.approx(0.62)
    assert hc.normalise(pd.Series([-289.415, 10574.0])).tolist() == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize("spelling,canonical", [
    ("h1-sit_hard-v0", "h1-sit_hard-v0"), ("h1_sit_hard_v0", "h1-sit_hard-v0"),
    ("h1-sit-hard-v0", "h1-sit_hard-v0"), ("h1-stair_v0", "h1-stair-v0"),
    ("ball_in_cup-catch", "ball_in_cup-catch"), ("cup-catch", "ball_in_cup-catch"),
    ("ball-in-cup-catch", "ball_in_cup-catch"), ("HalfCheetah_v4", "HalfCheetah-v4"),
    ("halfcheetah", "HalfCheetah-v4"), ("cartpole_balance_sparse", "cartpole-balance_sparse"),
    ("myo_pen_twirl_hard", "myo-pen-twirl-hard"), ("myoHandKeyTurnRandom-v0", "myo-key-turn-hard"),
    ("h1-walk", "h1-walk-v0")])
def test_spellings(spelling, canonical):
    assert canonical_name(spelling) == canonical


def test_every_published_spelling_maps_onto_the_57(results_dir):
    names: dict[str, set[str]] = {}
    for f in results_dir.rglob("*.csv"):
        for n in pd.read_csv(f, usecols=["env_name"])["env_name"].unique():
            names.setdefault(n, set()).add(f.name)
    mapped = {}
    for n in names:
        try:
            mapped[n] = canonical_name(n)
        except RegistryError:
            pass
    assert set(mapped.values()) == set(TASKS)
    # The main files each cover exactly the 57 tasks, whatever their spelling.
    for f in results_dir.glob("simbaV2_utd*.csv"):
        file_names = pd.read_csv(f, usecols=["env_name"])["env_name"].unique()
        assert {canonical_name(n) for n in file_names} == set(TASKS), f.name
    # Names outside the benchmark stay outside (no silent fuzzy matching).
    for outside in ("finger-turn", "cheetah-run-backwards", "mw-reach", "hopper-hop-backwards",
                    "reacher-three-easy", "pendulum-spin"):
        assert outside in names
        with pytest.raises(RegistryError):
            canonical_name(outside)


def test_unknown_names_list_the_closest_valid_ones():
    with pytest.raises(RegistryError, match="cartpole-balance") as e:
        canonical_name("cartpole-balanse")
    assert "unknown task 'cartpole-balanse'" in str(e.value)
    with pytest.raises(RegistryError, match="suites: .*hbench-hard"):
        resolve("mujoco,hbench-hardd")
    with pytest.raises(RegistryError):
        resolve(" , ")


def test_suites_only_name_known_tasks_or_suites():
    for name, members in SUITES.items():
        for m in members:
            assert m in SUITES or m in TASKS, (name, m)
