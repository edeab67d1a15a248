"""Progress of runs that take minutes (cold forecasts), drawn by tqdm on a terminal and nowhere else.

Only drawn on a TTY: in a pipe, a log file or under systemd a carriage-return bar is noise. tqdm limits
redraws to `min_interval` seconds, so a replay that reports every hour pays nothing measurable for it.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    """`update(done, note)` as work advances (`done` = units finished so far), `close()` at the end."""

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.25,
    ) -> None:
        stream = stream or sys.stderr
        self.enabled = stream.isatty() if enabled is None else enabled
        self._bar = tqdm(
            total=total,
            desc=label or None,
            file=stream,
            disable=not self.enabled,
            mininterval=min_interval,
            dynamic_ncols=True,
            leave=True,
        )

    def update(self, done: int, note: str = "") -> None:
        if note:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(max(0, done - self._bar.n))

    def close(self) -> None:
        self._bar.close()
