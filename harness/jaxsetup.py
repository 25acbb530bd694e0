"""Process-wide JAX settings for the harness's commands."""

from __future__ import annotations

import os
from pathlib import Path


def configure() -> None:
    """Persistent XLA compilation cache (every run of a plan compiles the same programs; a
    cache hit saves seconds per process on CPU and more on GPU). SIMBABENCH_JAX_CACHE=<dir>
    moves it, =off disables it."""
    import jax

    where = os.environ.get("SIMBABENCH_JAX_CACHE",
                           str(Path.home() / ".cache" / "simbabench" / "jax"))
    if where.lower() == "off":
        return
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
