"""Degraded states (forecaster down, market data failing, broker unreachable...), logged once each way.

A cycle every 15 minutes and an exit check every 60 s would otherwise repeat the same warning hundreds of
times during an outage; people reading `journalctl -f` want one line when trouble starts, one when it
ends (with how long it lasted), and `kronos-bot status` wants the current set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kronos_bot.logs import get_logger

log = get_logger("kronos_bot.health")


@dataclass(frozen=True)
class Degradation:
    name: str
    since: datetime
    reason: str


class DegradedTracker:
    """Thread-safe set of active degradations; `set`/`clear` log only on a change of state."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._active: dict[str, Degradation] = {}
        self._lock = threading.Lock()

    def set(self, name: str, reason: str, **details: Any) -> bool:
        """Mark `name` degraded; returns True (and logs `degraded.start`) only when it was not already."""
        with self._lock:
            if name in self._active:
                return False
            self._active[name] = Degradation(name, self._clock(), reason)
        log.warning("degraded.start", component=name, reason=reason, **details)
        return True

    def clear(self, name: str, **details: Any) -> bool:
        """Mark `name` healthy again; returns True (and logs `degraded.end`) only when it was degraded."""
        with self._lock:
            gone = self._active.pop(name, None)
        if gone is None:
            return False
        duration = (self._clock() - gone.since).total_seconds()
        log.info("degraded.end", component=name, duration_seconds=round(duration, 1), reason=gone.reason, **details)
        return True

    def update(self, name: str, failure: str | None, **details: Any) -> None:
        """`set` when there is a failure reason, else `clear`."""
        if failure:
            self.set(name, failure, **details)
        else:
            self.clear(name, **details)

    def active(self) -> list[Degradation]:
        with self._lock:
            return sorted(self._active.values(), key=lambda d: d.since)
