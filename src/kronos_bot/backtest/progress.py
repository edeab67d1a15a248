"""A one-line progress bar with ETA on stderr, for runs that take minutes (cold forecasts).

Only drawn on a TTY: in a pipe, a log file or under systemd a carriage-return bar is noise. Redrawn at
most every `min_interval` seconds so it costs nothing measurable per replayed hour.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_progress(done: int, total: int, elapsed: float, *, label: str = "", note: str = "", width: int = 28) -> str:
    """`label [#####.....] 120/4423  2.7%  00:41 elapsed  ETA 24:30  note` (pure)."""
    total = max(total, 1)
    done = min(max(done, 0), total)
    filled = int(width * done / total)
    bar = "#" * filled + "." * (width - filled)
    eta = "--:--" if done == 0 else format_duration(elapsed / done * (total - done))
    parts = [f"{label} [{bar}] {done}/{total} {100.0 * done / total:5.1f}%",
             f"{format_duration(elapsed)} elapsed", f"ETA {eta}"]
    if note:
        parts.append(note)
    return "  ".join(p for p in parts if p).strip()


class Progress:
    """`update(done, note)` as work advances, `close()` at the end (prints the final line)."""

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.label = label
        self.min_interval = min_interval
        self.clock = clock
        self.started = clock()
        self._last_draw = float("-inf")
        self.done = 0
        self.note = ""

    def update(self, done: int, note: str = "") -> None:
        self.done, self.note = done, note
        now = self.clock()
        if self.enabled and (now - self._last_draw >= self.min_interval or done >= self.total):
            self._last_draw = now
            line = format_progress(done, self.total, now - self.started, label=self.label, note=note)
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._last_draw = float("-inf")
            self.update(self.done, self.note)
            self.stream.write("\n")
            self.stream.flush()
