"""Progress display: a bar in a terminal, plain periodic lines in batch jobs."""

from __future__ import annotations

import sys


def _fmt_eval(row: dict) -> str:
    ev = {k[5:]: v for k, v in row.items() if k.startswith("eval/")}
    return " ".join(f"{k}={v:.3g}" for k, v in ev.items())


class Progress:
    """mode: auto (bar when stderr is a terminal, else lines) | bar | lines | none.

    `echo(line)` shows a progress line (lines mode only); `log(line)`, when given, receives
    every progress line whatever the mode (the run's run.log), so a line is written once to
    each."""

    def __init__(self, mode: str, total: int, echo, label: str, start: int = 0, log=None):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.echo, self.label, self.total = mode, echo, label, total
        self.log = log
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=label, unit="frame",
                            unit_scale=True, dynamic_ncols=True, file=sys.stderr)
        self.last = start

    def update(self, frames: int, row: dict) -> None:
        fps = row.get("throughput/frames_per_s", float("nan"))
        if self.bar is not None:
            self.bar.update(frames - self.last)
            self.bar.set_postfix_str(f"{fps:.0f} fps {_fmt_eval(row)}", refresh=False)
        line = (f"[{self.label}] {frames}/{self.total} frames "
                f"({100 * frames / self.total:.0f}%) {fps:.0f} fps "
                f"updates {row.get('updates', 0)} {_fmt_eval(row)}").rstrip()
        if self.bar is None and self.mode == "lines":
            self.echo(line)
        if self.log is not None:
            self.log(line)
        self.last = frames

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
