"""Checkpoints that survive being killed at any moment, and cost only the new data.

A checkpoint is a directory `ckpt_<frames>` holding `arrays/<name>.npy` files (the small
state: agent, statistics, the episode in progress) and `meta.json` (counters, RNG states, the
sha256 of every array file, and the list of segments it needs). Bulk data that only grows (the
replay buffer) goes into append-only segments, `segments/<name>/<field>.npy`, written once
and shared by every later checkpoint, so a save writes the data added since the previous save
(docs/checkpoints.md). Both are written under a temporary name and renamed into place, so a
partial one never carries a valid name; the last two checkpoints are kept, and the segments
no kept checkpoint lists are deleted. Loading verifies every checksum (arrays and segments)
and falls back to the previous checkpoint, with a warning, when the newest is corrupt,
incomplete or misses a segment.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import jax
import numpy as np

from harness.store import atomic_write_json

KEEP = 2
PREFIX = "ckpt_"
SEGMENTS = "segments"      # directory of the append-only segments, beside the checkpoints
SEGMENT_KEY = "segment/"   # prefix of segment data in load_latest's arrays


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


def _digest(arr: np.ndarray) -> str:
    """sha256 of an array's bytes (C order), computed in memory without a copy."""
    a = np.ascontiguousarray(arr)
    return hashlib.sha256(a.reshape(-1).view(np.uint8)).hexdigest()


def write_segment(directory: Path, record: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Write one append-only segment (`record["name"]`) atomically; returns the record with
    the sha256 of each field's data (what a checkpoint stores to verify it)."""
    root = Path(directory) / SEGMENTS
    final, tmp = root / record["name"], root / f".tmp_{record['name']}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, arr in arrays.items():
        with open(tmp / f"{name}.npy", "wb") as f:
            np.save(f, np.asarray(arr), allow_pickle=False)
    if final.exists():  # the same range written again after a resume: identical data
        shutil.rmtree(final)
    tmp.rename(final)
    return {**record, "sha256": {name: _digest(arr) for name, arr in arrays.items()}}


def _load_segment(directory: Path, record: dict) -> dict[str, np.ndarray]:
    path = Path(directory) / SEGMENTS / record["name"]
    out = {}
    for name, digest in record["sha256"].items():
        arr = np.load(path / f"{name}.npy", allow_pickle=False)
        if _digest(arr) != digest:
            raise ValueError(f"checksum mismatch in segment {record['name']}/{name}")
        out[name] = arr
    return out


def _prune_segments(directory: Path, keep: set[str]) -> None:
    root = Path(directory) / SEGMENTS
    if root.is_dir():
        for seg in root.iterdir():
            if seg.name not in keep:
                shutil.rmtree(seg, ignore_errors=True)


def save(directory: Path, frames: int, arrays: dict[str, np.ndarray], meta: dict,
         segments: list[dict] = ()) -> Path:
    """A checkpoint of `arrays` and `meta` that needs the already written `segments`
    (records returned by write_segment). Returns its path."""
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
    atomic_write_json(tmp / "meta.json", {"frames": frames, "meta": meta, "sha256": sums,
                                          "segments": list(segments)})
    if final.exists():  # same frame count saved again (e.g. a signal right after a periodic save)
        shutil.rmtree(final)
    tmp.rename(final)
    for old in sorted(directory.glob(f"{PREFIX}*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    keep = {r["name"] for r in segments}
    for kept in directory.glob(f"{PREFIX}*"):
        try:
            keep |= {r["name"] for r in
                     json.loads((kept / "meta.json").read_text()).get("segments", [])}
        except (OSError, ValueError):  # unreadable: unusable anyway
            pass
    _prune_segments(directory, keep)
    return final


def _load_one(path: Path) -> tuple[int, dict[str, np.ndarray], dict]:
    info = json.loads((path / "meta.json").read_text())
    arrays = {}
    for name, digest in info["sha256"].items():
        f = path / "arrays" / f"{_safe(name)}.npy"
        if _file_sha(f) != digest:
            raise ValueError(f"checksum mismatch in {f.name}")
        arrays[name] = np.load(f, allow_pickle=False)
    for record in info.get("segments", []):
        for field, arr in _load_segment(path.parent, record).items():
            arrays[f"{SEGMENT_KEY}{record['name']}/{field}"] = arr
    return int(info["frames"]), arrays, info["meta"]


def frames_of(path: Path) -> int:
    return int(Path(path).name[len(PREFIX):])


def load_latest(directory: Path, max_frames: int | None = None
                ) -> tuple[int, dict[str, np.ndarray], dict, Path]:
    """(frames, arrays, meta, path) of the newest valid checkpoint (at most `max_frames`);
    NoCheckpoint if none. The data of every segment it lists is in `arrays` as
    `segment/<name>/<field>` (`segment_arrays` picks one out)."""
    candidates = sorted(Path(directory).glob(f"{PREFIX}*"), reverse=True)
    if max_frames is not None:
        candidates = [c for c in candidates if frames_of(c) <= max_frames]
    for path in candidates:
        try:
            frames, arrays, meta = _load_one(path)
            return frames, arrays, meta, path
        except Exception as e:  # corrupt, truncated or half-deleted: use the previous one
            warnings.warn(f"checkpoint {path} is unusable ({type(e).__name__}: {e}); "
                          "falling back to the previous one", stacklevel=2)
    raise NoCheckpoint(f"no usable checkpoint in {directory}")


def flatten(prefix: str, tree) -> dict[str, np.ndarray]:
    """A pytree's leaves as checkpoint arrays named `<prefix>/<key path>`."""
    return {f"{prefix}/{jax.tree_util.keystr(k)}": np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten(prefix: str, template, arrays: dict[str, np.ndarray], convert=lambda x: x):
    """The inverse of `flatten`: `template`'s structure, leaves read from `arrays`."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [
        convert(arrays[f"{prefix}/{jax.tree_util.keystr(p)}"]) for p, _ in paths])


def segment_arrays(arrays: dict[str, np.ndarray], record: dict) -> dict[str, np.ndarray]:
    """The fields of one loaded segment, from load_latest's `arrays`."""
    prefix = f"{SEGMENT_KEY}{record['name']}/"
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def set_aside(directory: Path) -> Path:
    """Move a directory of unusable checkpoints out of the way (kept for inspection, never
    deleted): `<name>.unusable-<n>`. Returns the new path."""
    directory = Path(directory)
    n = 1
    while (aside := directory.with_name(f"{directory.name}.unusable-{n}")).exists():
        n += 1
    directory.rename(aside)
    return aside


def exists(directory: Path) -> bool:
    return any(Path(directory).glob(f"{PREFIX}*"))
