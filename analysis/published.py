"""The authors' published result CSVs, fetched at a pinned commit and checked by SHA-256.

    python -m analysis.published [dest=<cache dir>] [source=<dir>]

Downloads every file listed in `SHA256` from the SimbaV2 repository (`results/` at `COMMIT`)
into `dest` (default `~/.cache/simbabench/simbav2-results`, or `$XDG_CACHE_HOME/...`), with
the same relative paths. `source=<dir>` copies from a local folder with the same layout
instead of downloading (an offline mirror, or the copy the tests use). Then

    python -m analysis.make_figures results=~/.cache/simbabench/simbav2-results/simbaV2_utd2.csv,~/.cache/simbabench/simbav2-results/baseline out=out/paper

Behaviour:
* each file is written to a temporary file next to its target and renamed into place only
  when its SHA-256 matches the table, so an interrupted fetch never leaves a partial file;
* a file already present with the right checksum is skipped (a rerun resumes); one present
  with the wrong checksum is reported and fetched again;
* a fetched file whose checksum does not match is an error naming the file, both checksums
  and where it came from; nothing is written for it;
* exit status: 0 all files present and verified, 1 a checksum mismatch or a failed transfer,
  2 bad input (unknown key, missing `source` folder).

Pin: commit 14fafb2 (2025-06-01, "update docs") of github.com/dojeon-ai/SimbaV2 (the
repository now lives at DAVIAN-Robotics/SimbaV2; GitHub redirects the old name). Its `results/`
folder was last changed in 358d724 (2025-03-24, "Add SAC MuJoCo"). Every file in the table was
checked against that commit: all 56 match byte for byte. Upstream also lists
`results/baseline/mad-td_utd8.csv` at that commit; it was not available in the snapshot the
table was made from, so it has no checksum here and is not fetched. The file format, the
name spellings and what each file holds are described in docs/published-results.md.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.cli import UsageError, check_keys, fail, split_kv
from harness.store import current_umask

REPOSITORY = "dojeon-ai/SimbaV2"
COMMIT = "14fafb27e6f78f0b65d19b8873b4433547a2193c"
URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/results/{{path}}"

# Relative path under results/ -> SHA-256 of the file at COMMIT.
SHA256: dict[str, str] = {
    "baseline/bro_utd10.csv": "9df33dff5f79fc47942d96073c653b0a05564a1d8a2654cef66053755fd1e973",
    "baseline/bro_utd2.csv": "a6b9a4425d6535d8f9871c81d93c1602922f51dfc8a56fdbee91dfcc820d577b",
    "baseline/crossq.csv": "49ffc142aac87746bf4b6f2c4b777cd731b1e6fbc15853a0fb60bb7c2d5f033c",
    "baseline/droq_utd20.csv": "90fe1a58ca989211b75eb162c72059434b73db0d28afc48eb27ec42254ba6750",
    "baseline/mrq.csv": "685c48f8754cc36d98934db27ecc83b502d90c75b0f4346c06c9b5b0fe09ef12",
    "baseline/redq_utd20.csv": "153126ac814dc308246466acdda2bc733b19d0ff8357da338e54b186a47059b4",
    "baseline/sac.csv": "ad3ad76922293f4f5857625b1a5cccdc0e382b3aff1300c3b20a8d25c4e539b3",
    "baseline/simbaV2_utd2.csv": "dd1a9379d4d8ef3879ea63ba061afb8e68ce98434dbdcd060889fc3eff64ec55",
    "baseline/simbaV2_utd8.csv": "410cf79b001328cd068d9aca85d90976898299999c1a8d8061ffc81bd2eaf585",
    "baseline/simba_utd2.csv": "6f90e6abacb3c8cb76c7a36a186a97918a149f37309faae7d5ff44597c28fd2f",
    "baseline/tdmpc2.csv": "6e072130a1b9641c58d71163574dc384eefd0437fd521bad1ab12b62fc6d9097",
    "design_study/a_no_input_norm.csv": "2e52f9925e67877d244cded88268ecaf662309594aef18d9bd4a752948af00bc",
    "design_study/b_no_shift.csv": "732a15c1966ce0ef3b45005a56327cae45ea078024509ef9270ca7f627cfb301",
    "design_study/c_shift_1.csv": "3bf918db295927c81898aee6db06c120236de16c805445832b97d677bab03cdb",
    "design_study/d_resize_proj.csv": "6c3555275ef9e2a6e990c3df8df4ca9accce95d994b0ae013a12c1e2c9b4e060",
    "design_study/e_mse_loss.csv": "6146baaa2a5fda26fe498cf17017dd5ffe6e6de9704ae33c5f30d66287eb2649",
    "design_study/f_no_rew_normalize.csv": "c64cfb4f5de664c913e8c15c460737a972725aaaf09fbf33208487c50726ce0d",
    "design_study/g_no_rew_bound.csv": "26e5c40cc8772fadf61a8e16f32b9a6dca9b93298f7d0ab768ae9d083bce403e",
    "design_study/h_hard_target_copy.csv": "17a26d9fdc7d423cf63b62f305db2402fdd216caf32d51e3ab129b78730290e7",
    "design_study/i_no_lr_decay.csv": "683396bdea18e6ffceb2bc0123fc75fcf459f80018c0fb34ba83cf070252fb32",
    "design_study/j_scaler_init_1.csv": "37eb2d18d4052f71392437bceb22ac5238c2a2e7c9826fdb1dd8155f3411315c",
    "design_study/k_scaler_scale_1.csv": "8ba2036a284bf3e40d3ec0fbdc5330303bce2653661f7d3fc8c457fd87b2533a",
    "design_study/l_alpha_init_05.csv": "a43b083c62b0302782ac677e61e62decc328d5cc0c5ba105e0bb6c7756f62de8",
    "design_study/m_alpha_scale_1.csv": "0b3041e45c9bae6d114e9972b46b6799c0de1dcc1ada63d9fdf408052fd025d0",
    "scaling/param/simbaV2_cwidth1024.csv": "a1db8cc501e46e16985e1168529ad6a8e006666597334848475a54d4ed72b98d",
    "scaling/param/simbaV2_cwidth128.csv": "2c3f6dfe904bea8c06b776f167e90eab4830f385a51e4b10d33749bdcd70043d",
    "scaling/param/simbaV2_cwidth256.csv": "abf8dc52463097de6e66dc7f89111d7c52fad3139eed207beb1127db7fac9cf4",
    "scaling/param/simbaV2_cwidth512.csv": "686df86daac29c0212ed423c4b7954f322e0490c0c48dcc3ff89a890c2aede90",
    "scaling/param/simba_cwidth1024.csv": "1c8e1cdb097762d74b09e7601c04ec990ed31275f06005921c17b88fcdde9dec",
    "scaling/param/simba_cwidth128.csv": "f52d66d7950ef1bf4ea4561d7204f73df139fa92586fb219e1cbb4c03ad609f7",
    "scaling/param/simba_cwidth256.csv": "7aa210e8bdf9bbc048d604a39ad49a4ca74c05d5b9fc97abab81118f3eeebe7c",
    "scaling/param/simba_cwidth512.csv": "b10874c0e90160a8025e2eff182b9213f08d4a5c127648ceadb9c7ed151861e7",
    "scaling/param/simba_plus_cwidth1024.csv": "cd9af86758658e8219a901580084d5865cb00f078543570c5ecbbc0b92546d95",
    "scaling/param/simba_plus_cwidth128.csv": "63ea32ad990222561a788b3634ec6efd760d3bb95268312990559f9bcf3d389b",
    "scaling/param/simba_plus_cwidth256.csv": "dcf25374a128a5e791ebee008c0b4c70a51999e0750821f687fcc4d85899c913",
    "scaling/param/simba_plus_cwidth512.csv": "ea264fa22e062b7462b24ac4bb7c1ebc5a9aa28853f3063cf7471bde21c0e4a4",
    "scaling/utd/simbaV2_utd1.csv": "84fab88deb6baee1f205cbf616274dca9b36c76d703c9fa46928a48c0416ae64",
    "scaling/utd/simbaV2_utd1_reset.csv": "367777c287f47ba6d63f6551ae0e56970405fb074c85e278d9e8c3d585be437d",
    "scaling/utd/simbaV2_utd2.csv": "611e497ee85f907c99f03421e30b8cc55ac34633c5160808df3c65a198f76c10",
    "scaling/utd/simbaV2_utd2_reset.csv": "e7a094cd6d01a30f368654612bb6e45b8a36e78f8610985ab627f2256bee03cf",
    "scaling/utd/simbaV2_utd4.csv": "ec748902e75c522a7c58a4954f6656e955b3e26cce486bce2d7f6ce17235105c",
    "scaling/utd/simbaV2_utd4_reset.csv": "6ec5866e890d26c6b00b6b123d40de991abb88b6e37721ca65faddba33b096db",
    "scaling/utd/simbaV2_utd8.csv": "410cf79b001328cd068d9aca85d90976898299999c1a8d8061ffc81bd2eaf585",
    "scaling/utd/simbaV2_utd8_reset.csv": "e6f648efc5d222c0813fc88b21d04d0d288a6db015ffcb9950991c026358090b",
    "scaling/utd/simba_utd1.csv": "2d9d64f482e0ed5e42a4a51e5636327a406b1861859b3980c3ec38867101235d",
    "scaling/utd/simba_utd1_reset.csv": "ea3a81e4fc6d08dcfa724869063e1b9c848cff9f835e1c8c33353a92e177f5eb",
    "scaling/utd/simba_utd2.csv": "cc0fbcadc6f0fb3cf398d4534e8496221677554e694d41234253918667736364",
    "scaling/utd/simba_utd2_reset.csv": "f5e10a34a1e57983bc6f8641b2d099802f7237142cd9b0a2cec80ebc04737ea1",
    "scaling/utd/simba_utd4.csv": "c7b649d79715883eaa507bd253ae9be2f64d06c5ed14c3061cae0bb210a43f35",
    "scaling/utd/simba_utd4_reset.csv": "591fc458c571fa8284f493d85b2c8695986f630bf9ba1d842d8d17acbfbfa424",
    "scaling/utd/simba_utd8.csv": "e698a27ebb0bde7325f28d71c85944b666d9dff54367d5dae6c8dc8d11993341",
    "scaling/utd/simba_utd8_reset.csv": "52ab0d85edbca8183509bab53c1c918d2ddbc217f46873b4afc975069efd43b9",
    "simbaV2_utd1.csv": "84fab88deb6baee1f205cbf616274dca9b36c76d703c9fa46928a48c0416ae64",
    "simbaV2_utd2.csv": "dd1a9379d4d8ef3879ea63ba061afb8e68ce98434dbdcd060889fc3eff64ec55",
    "simbaV2_utd4.csv": "ec748902e75c522a7c58a4954f6656e955b3e26cce486bce2d7f6ce17235105c",
    "simbaV2_utd8.csv": "410cf79b001328cd068d9aca85d90976898299999c1a8d8061ffc81bd2eaf585",
}

CHUNK = 1 << 20
ATTEMPTS = 3
TIMEOUT_S = 60


class ChecksumError(RuntimeError):
    """A fetched or copied file does not have the SHA-256 in `SHA256`."""


class FetchError(RuntimeError):
    """A file could not be downloaded or copied."""


@dataclass
class Summary:
    dest: Path
    present: list[str]      # already in the cache with the right checksum (skipped)
    fetched: list[str]      # downloaded or copied now
    repaired: list[str]     # were in the cache with a wrong checksum, fetched again


def default_dest() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "simbabench" / "simbav2-results"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_source(rel: str, source: Path | None):
    """A readable binary stream for one file and a description of where it comes from."""
    if source is not None:
        path = source / rel
        try:
            return open(path, "rb"), str(path)
        except OSError as e:
            raise FetchError(f"cannot read {rel} from {source}: {e}") from None
    url = URL.format(path=rel)
    request = urllib.request.Request(url, headers={"User-Agent": "simbabench"})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S), url


def _transfer(rel: str, target: Path, source: Path | None) -> None:
    """Write one file to `target` atomically, verified against its table checksum."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.part"):   # left by an interrupted run
        stale.unlink(missing_ok=True)
    last: Exception | None = None
    attempts = 1 if source is not None else ATTEMPTS
    for attempt in range(attempts):
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
        tmp = Path(tmp_name)
        os.fchmod(fd, 0o666 & ~current_umask())   # readable like any file the user writes
        try:
            h = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as out:
                    stream, origin = _open_source(rel, source)
                    with stream:
                        for chunk in iter(lambda: stream.read(CHUNK), b""):
                            h.update(chunk)
                            out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except (OSError, urllib.error.URLError) as e:
                raise FetchError(f"cannot fetch {rel}: {e}") from None
            got = h.hexdigest()
            if got != SHA256[rel]:
                raise ChecksumError(f"checksum mismatch for {rel}: expected sha256 {SHA256[rel]}, "
                                    f"got {got} (from {origin})")
            os.replace(tmp, target)
            return
        except FetchError as e:
            last = e
            if attempt + 1 < attempts:
                time.sleep(2 ** attempt)
        finally:
            tmp.unlink(missing_ok=True)
    assert last is not None
    raise last


def fetch(dest: Path | str | None = None, source: Path | str | None = None,
          log=print) -> Summary:
    """Make `dest` hold every file of `SHA256` with the right checksum; see the module doc.
    Raises ChecksumError / FetchError after trying every file (the first error re-raised,
    each one logged)."""
    dest = Path(dest).expanduser() if dest else default_dest()
    src = Path(source).expanduser() if source else None
    if src is not None and not src.is_dir():
        raise UsageError(f"bad value {str(source)!r} for source: not a folder")
    summary = Summary(dest, [], [], [])
    errors: list[Exception] = []
    for rel in sorted(SHA256):
        target = dest / rel
        repaired = False
        if target.is_file():
            if sha256_file(target) == SHA256[rel]:
                summary.present.append(rel)
                continue
            log(f"{rel}: checksum mismatch in the cache, fetching it again")
            repaired = True
        try:
            _transfer(rel, target, src)
        except (ChecksumError, FetchError) as e:
            print(f"error: {e}", file=sys.stderr)
            errors.append(e)
            continue
        (summary.repaired if repaired else summary.fetched).append(rel)
        log(f"{rel}: {'re-' if repaired else ''}{'copied' if src else 'downloaded'}")
    if errors:
        raise errors[0]
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    try:
        kv = split_kv(argv)
        check_keys(kv, ("dest", "source"))
        for key in ("dest", "source"):
            if key in kv and not kv[key]:
                raise UsageError(f"{key}= needs a folder")
        summary = fetch(kv.get("dest"), kv.get("source"))
    except UsageError as e:
        fail(str(e), 2)
    except (ChecksumError, FetchError) as e:
        print(f"failed: {e}\nfiles with a wrong checksum were not written; rerun to retry "
              f"(files already verified are kept)", file=sys.stderr)
        return 1
    n = len(SHA256)
    print(f"{n} files verified in {summary.dest} ({len(summary.present)} already present, "
          f"{len(summary.fetched)} fetched, {len(summary.repaired)} repaired; "
          f"{REPOSITORY}@{COMMIT[:7]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
