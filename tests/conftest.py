"""Shared test fixtures: headless MuJoCo, the private reference data (../shared) when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIMBABENCH_SHARED", REPO.parent / "shared"))
RESULTS = SHARED / "reference" / "simbav2-results"
SPEC = SHARED / "docs" / "simbav2-spec.md"


@pytest.fixture(scope="session")
def results_dir() -> Path:
    if not RESULTS.is_dir():
        pytest.skip(f"published results not found at {RESULTS} (set SIMBABENCH_SHARED)")
    return RESULTS


@pytest.fixture(scope="session")
def spec_text() -> str:
    if not SPEC.is_file():
        pytest.skip(f"spec not found at {SPEC} (set SIMBABENCH_SHARED)")
    return SPEC.read_text()


@pytest.fixture(scope="session")
def results_dir_or_none() -> Path | None:
    """The published results when present (tests that only add them use this)."""
    return RESULTS if RESULTS.is_dir() else None


@pytest.fixture(scope="session")
def published(results_dir) -> Path:
    """The authors' SimbaV2 UTD 2 run (10 seeds): the file the reproduction check uses."""
    path = results_dir / "simbaV2_utd2.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found (published SimbaV2 UTD 2 results)")
    return path
