"""Derived seeds: one run seed fans out into independent, reproducible streams."""

from __future__ import annotations

import zlib

import numpy as np

# Streams of one run. Stable integers, never reordered (changing them changes every result).
STREAMS = {"train_env": 1, "eval_env": 2, "agent": 3, "replay": 4, "warmup": 5, "act": 6,
           "metrics": 7}


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 32-bit seed derived from `seed` and a path of keys (ints or stream names)."""
    path = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        path.append(STREAMS[k] if k in STREAMS else
                    (int(k) if isinstance(k, (int, np.integer)) else zlib.crc32(str(k).encode())))
    return int(np.random.SeedSequence(path).generate_state(1)[0])


def env_seeds(seed: int) -> tuple[int, int]:
    """(training env seed, evaluation env seed) for run seed `seed`: different, derived."""
    return derive_seed(seed, "train_env"), derive_seed(seed, "eval_env")
