"""What the command line and the benchmarks share: exit codes, the usage error, the
progress line, argparse value types, and the one duration in words (the core's estimates use
it too). Neither imports the other; both import this.
"""

from __future__ import annotations

import argparse
import sys
import time

from .errors import JoyqError

EXIT_OK, EXIT_FAILED_FILES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(JoyqError):
    """A usage or configuration problem, reported as one line and exit code 2."""


def format_duration(seconds: float) -> str:
    """A duration in words: seconds (at least 1), minutes or hours (estimates, projections)."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressLine:
    """A one-line progress bar on stderr: done/total, rate and ETA. Redrawn in place on a
    terminal; in a log, one line every 5 s of a long task (and nothing for a short one)."""

    def __init__(self, label: str, unit: str = "img", stream=None):
        self.label, self.unit, self.stream = label, unit, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = 0.0 if self.tty else time.monotonic()
        self.printed = False

    def __call__(self, done: int, total: int, rate: float | None = None) -> None:
        now = time.monotonic()
        final = done >= total and (self.tty or self.printed)
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last, self.printed = now, True
        pct = 100.0 * done / max(total, 1)
        width = 24
        bar = "#" * int(width * done / max(total, 1))
        text = f"{self.label} [{bar:<{width}}] {done}/{total} {pct:5.1f}%"
        if rate:
            eta = (total - done) / rate if rate > 0 else 0
            text += f"  {rate:,.1f} {self.unit}/s  ETA {format_seconds(eta)}"
        self.stream.write(("\r" if self.tty else "") + text + ("" if self.tty and done < total else "\n"))
        self.stream.flush()


def _number(text: str, kind: type) -> float:
    """``text`` as an int or float; a sentence (not argparse's "invalid positive_int value") when it is none."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be {'a whole number' if kind is int else 'a number'}, not {text!r}"
        ) from None


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value
