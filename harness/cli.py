"""`key=value` command lines: parsing and the one way every command reports bad input."""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import NoReturn


class UsageError(ValueError):
    """Bad command-line input; the message names the problem and the valid choices."""


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def split_kv(argv: list[str]) -> dict[str, str]:
    """['a=1', 'b.c=x,y'] -> {'a': '1', 'b.c': 'x,y'}; a token without '=' or a repeated key is
    an error."""
    out: dict[str, str] = {}
    for tok in argv:
        key, sep, value = tok.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"expected key=value, got {tok!r}")
        if key in out:
            raise UsageError(f"key {key!r} given twice")
        out[key] = value.strip()
    return out


def check_keys(given: dict[str, str], valid) -> None:
    for key in given:
        if key not in valid:
            raise UsageError(f"unknown key {key!r}{suggest(key, valid)}; valid keys: "
                             f"{', '.join(sorted(valid))}")


def check_choice(key: str, value: str, choices) -> str:
    if value not in choices:
        raise UsageError(f"bad value {value!r} for {key}{suggest(value, choices)}; "
                         f"valid: {', '.join(choices)}")
    return value


UNWRITABLE = ("/proc", "/sys", "/dev")


def check_output_dir(key: str, path) -> Path:
    """`path` as a directory this command may write: an existing writable directory, or
    creatable under a writable existing parent; never an existing file, never under /proc,
    /sys or /dev. Raises UsageError naming the setting; nothing is created."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    text = str(path)
    if not text.strip():
        raise UsageError(f"bad value {text!r} for {key}: expected a directory")
    if any(str(p) == d or str(p).startswith(d + "/") for d in UNWRITABLE):
        raise UsageError(f"bad value {text!r} for {key}: cannot write under "
                         f"{', '.join(UNWRITABLE)}")
    parent = p
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        what = "is an existing file" if parent == p else f"lies under the file {parent}"
        raise UsageError(f"bad value {text!r} for {key}: {what}; expected a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"bad value {text!r} for {key}: {parent} is not writable")
    return p
