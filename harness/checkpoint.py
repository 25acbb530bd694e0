"""Checkpoints that survive being killed at any moment.

A checkpoint is a directory `ckpt_<frames>` holding `arrays/<name>.npy` files and
`meta.json` (counters, RNG states, and the sha256 of every array file). It is written under a
temporary name and renamed into place, so a partial checkpoint never carries a valid name; the
last two are kept; loading verifies checksums and falls back to the previous one with a
warning when the newest is corrupt or incomplete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np

from harness.store import atomic_write_json

KEEP = 2
PREFIX = "ckpt_"


class NoCheckpoint(RuntimeError):
    pass


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe(name: str) -> str:
    return name.replace("/", "__")


def save(directory: Path, frames: int, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{frames:012d}"
    tmp = directory / f".tmp_{PREFIX}{frames:012d}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "arrays").mkdir(parents=True)
    sums = {}
    for name, arr in arrays.items():
        path = tmp / "arrays" / f"{_safe(name)}.npy"
        with open(path, "wb") as f:
            np.save(f, np.asarray(arr), allow_pickle=False)  # keeps 0-d arrays 0-d
        sums[name] = _file_sha(path)
    atomic_write_json(tmp / "meta.json", {"frames": frames, "meta": meta, "sha256": sums})
    if final.exists():  # same frame count saved again (e.g. a signal right after a periodic save)
        shutil.rmtree(final)
    tmp.rename(final)
    for old in sorted(directory.glob(f"{PREFIX}*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_one(path: Path) -> tuple[int, dict[str, np.ndarray], dict]:
    info = json.loads((path / "meta.json").read_text())
    arrays = {}
    for name, digest in info["sha256"].items():
        f = path / "arrays" / f"{_safe(name)}.npy"
        if _file_sha(f) != digest:
            raise ValueError(f"checksum mismatch in {f.name}")
        arrays[name] = np.load(f, allow_pickle=False)
    return int(info["frames"]), arrays, info["meta"]


def load_latest(directory: Path) -> tuple[int, dict[str, np.ndarray], dict, Path]:
    """(frames, arrays, meta, path) of the newest valid checkpoint; NoCheckpoint if none."""
    candidates = sorted(Path(directory).glob(f"{PREFIX}*"), reverse=True)
    for path in candidates:
        try:
            frames, arrays, meta = _load_one(path)
            return frames, arrays, meta, path
        except Exception as e:  # corrupt, truncated or half-deleted: use the previous one
            warnings.warn(f"checkpoint {path} is unusable ({type(e).__name__}: {e}); "
                          "falling back to the previous one", stacklevel=2)
    raise NoCheckpoint(f"no usable checkpoint in {directory}")


def exists(directory: Path) -> bool:
    return any(Path(directory).glob(f"{PREFIX}*"))
