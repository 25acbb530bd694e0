"""`python -m harness.status exp=<name> [root=runs] [format=table|json]`

Per-suite counts of pending / running / completed / failed runs of an experiment (all sweep
points and agents under it), with failure reasons and SLURM job ids.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

from harness.cli import UsageError, check_choice, check_keys, fail, split_kv
from harness.store import CHECKPOINT_DIR, FINAL_DIR, JOB_FILE, STATES, read_json, read_status
from suites import try_canonical_name, get_task


def scan(root: Path, exp: str) -> list[dict]:
    """One record per run directory (a `seed_*` directory) under root/exp."""
    base = root / exp
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        name = os.path.basename(dirpath)
        if not name.startswith("seed_"):
            dirnames[:] = [d for d in dirnames
                           if d not in (CHECKPOINT_DIR, FINAL_DIR, "_submitit")]
            continue
        dirnames[:] = []
        d = Path(dirpath)
        st = read_status(d)
        job = read_json(d / JOB_FILE) or {}
        task = try_canonical_name(d.parent.name)
        out.append({"path": str(d), "point": str(d.parent.parent.relative_to(base)),
                    "task": d.parent.name, "domain": get_task(task).domain if task else "other",
                    "state": st.state, "reason": st.reason,
                    "frames_done": st.frames_done, "frames": st.frames,
                    "job_id": st.job_id or job.get("job_id")})
    return out


def report(runs: list[dict]) -> str:
    by = collections.defaultdict(collections.Counter)
    for r in runs:
        by[r["domain"]][r["state"]] += 1
        by["all"][r["state"]] += 1
    lines = [f"{'suite':10s} {'runs':>6s} " + " ".join(f"{s:>10s}" for s in STATES)]
    for dom in sorted(by, key=lambda d: (d == "all", d)):
        c = by[dom]
        lines.append(f"{dom:10s} {sum(c.values()):6d} " + " ".join(f"{c[s]:10d}" for s in STATES))
    failed = [r for r in runs if r["state"] == "failed"]
    if failed:
        lines.append("\nfailed runs:")
        reasons = collections.defaultdict(list)
        for r in failed:
            reasons[r["reason"] or "no reason recorded"].append(r)
        for reason, rs in reasons.items():
            lines.append(f"  {len(rs)} x {reason}")
            for r in rs[:5]:
                lines.append(f"      {r['path']}" + (f" (job {r['job_id']})" if r["job_id"] else ""))
            if len(rs) > 5:
                lines.append(f"      ... {len(rs) - 5} more")
        lines.append("resubmit them with the launch command plus only=failed")
    running = [r for r in runs if r["state"] == "running"]
    if running:
        lines.append("\nrunning: " + ", ".join(
            f"{r['task']} ({r['frames_done']}/{r['frames']} frames"
            + (f", job {r['job_id']})" if r["job_id"] else ")") for r in running[:10])
            + (" ..." if len(running) > 10 else ""))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    try:
        kv = split_kv(argv)
        check_keys(kv, {"exp", "root", "format"})
        if "exp" not in kv:
            raise UsageError("exp= is required (the experiment name given to the launcher)")
        fmt = check_choice("format", kv.get("format", "table"), ("table", "json"))
        root = Path(kv.get("root", "runs"))
        if not (root / kv["exp"]).is_dir():
            known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise UsageError(f"no experiment {kv['exp']!r} under {root}; experiments there: "
                             f"{', '.join(known) or 'none'}")
    except UsageError as e:
        fail(str(e))
    runs = scan(root, kv["exp"])
    if fmt == "json":
        print(json.dumps(runs, indent=1))
    else:
        print(report(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
