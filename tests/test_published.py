"""analysis.published: the pinned checksums, copying from a local folder into a cache, resuming,
repairing a corrupt cache file, refusing a corrupt source, and bad input (exit 2). The download
path itself needs the network and is not tested here."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import published

REPO = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.published", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_table_is_pinned_and_well_formed():
    assert len(published.COMMIT) == 40 and int(published.COMMIT, 16) >= 0
    assert published.COMMIT in published.URL
    assert len(published.SHA256) == 56
    for rel, digest in published.SHA256.items():
        assert rel.endswith(".csv") and not rel.startswith("/") and ".." not in rel
        assert len(digest) == 64 and int(digest, 16) >= 0


def test_table_lists_every_shared_file(results_dir):
    shared = {p.relative_to(results_dir).as_posix() for p in results_dir.rglob("*") if p.is_file()}
    assert shared == set(published.SHA256)


def test_copy_from_source_then_resume_and_repair(results_dir, tmp_path):
    cache = tmp_path / "cache"
    run = _cli(f"dest={cache}", f"source={results_dir}")
    assert run.returncode == 0, run.stderr
    for rel, digest in published.SHA256.items():
        assert (cache / rel).is_file(), rel
        assert _sha(cache / rel) == digest, rel
    assert not list(cache.rglob("*.part"))

    # a rerun fetches nothing
    again = published.fetch(cache, results_dir, log=lambda _m: None)
    assert again.fetched == [] and again.repaired == []
    assert len(again.present) == len(published.SHA256)

    # a corrupt cache file is reported and copied again
    victim = "baseline/tdmpc2.csv"
    with open(cache / victim, "ab") as f:
        f.write(b"garbage\n")
    rerun = _cli(f"dest={cache}", f"source={results_dir}")
    assert rerun.returncode == 0, rerun.stderr
    assert victim in rerun.stdout and "mismatch" in rerun.stdout
    assert "1 repaired" in rerun.stdout
    assert _sha(cache / victim) == published.SHA256[victim]


def test_corrupt_source_is_an_error_naming_the_file(results_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(results_dir, source)
    victim = "design_study/e_mse_loss.csv"
    data = bytearray((source / victim).read_bytes())
    data[100] ^= 1
    (source / victim).write_bytes(bytes(data))
    cache = tmp_path / "cache"

    run = _cli(f"dest={cache}", f"source={source}")
    assert run.returncode == 1
    assert f"checksum mismatch for {victim}" in run.stderr
    assert not (cache / victim).exists()           # nothing written for the bad file
    assert not list(cache.rglob("*.part"))
    others = [rel for rel in published.SHA256 if rel != victim]
    assert all(_sha(cache / rel) == published.SHA256[rel] for rel in others)

    with pytest.raises(published.ChecksumError, match=victim):
        published.fetch(cache, source, log=lambda _m: None)


@pytest.mark.parametrize("args", [["bogus=1"], ["dest"], ["source=/nonexistent/folder"],
                                  ["dest="]])
def test_bad_input_exits_2(args, tmp_path):
    run = _cli(*[a.replace("/nonexistent", str(tmp_path / "nonexistent")) for a in args])
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.startswith("error:")
