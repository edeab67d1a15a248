"""Degraded states (forecaster down, market data failing, broker unreachable...), logged once each way.

A cycle every 15 minutes and an exit check every 60 s would otherwise repeat the same warning hundreds of
times during an outage; people reading `journalctl -f` want one line when trouble starts, one when it
ends (with how long it lasted), and `kronos-bot status` wants the current set. Warnings that an ongoing
episode explains (a retry, a skipped scheduler run) go to debug through `repeat()`, and their counts
appear in the episode's `degraded.end` event as `suppressed`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kronos_bot.logs import get_logger
from kronos_bot.trader.events import NO_EVENTS, DegradedChange, TraderEvents

log = get_logger("kronos_bot.trader.health")


@dataclass(frozen=True)
class Degradation:
    name: str
    since: datetime
    reason: str


class DegradedTracker:
    """Thread-safe set of active degradations; `set`/`clear` log only on a change of state."""

    def __init__(
        self, clock: Callable[[], datetime] = lambda: datetime.now(UTC), events: TraderEvents = NO_EVENTS
    ) -> None:
        self._clock = clock
        self.events = events
        self._active: dict[str, Degradation] = {}
        self._suppressed: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def set(self, name: str, reason: str, **details: Any) -> bool:
        """Mark `name` degraded; returns True (and logs `degraded.start`) only when it was not already."""
        with self._lock:
            if name in self._active:
                return False
            started = Degradation(name, self._clock(), reason)
            self._active[name] = started
            self._suppressed[name] = Counter()
        log.warning("degraded.start", component=name, reason=reason, **details)
        self.events.degraded(DegradedChange(name, True, reason, started.since, started.since))
        return True

    def clear(self, name: str, **details: Any) -> bool:
        """Mark `name` healthy again; returns True (and logs `degraded.end`) only when it was degraded."""
        with self._lock:
            gone = self._active.pop(name, None)
            suppressed = self._suppressed.pop(name, Counter())
        if gone is None:
            return False
        now = self._clock()
        duration = (now - gone.since).total_seconds()
        if suppressed:
            details = {**details, "suppressed": dict(sorted(suppressed.items()))}
        log.info("degraded.end", component=name, duration_seconds=round(duration, 1), reason=gone.reason, **details)
        self.events.degraded(DegradedChange(name, False, gone.reason, gone.since, now, round(duration, 1)))
        return True

    def repeat(self, components: str | Iterable[str] | None, event: str) -> bool:
        """True when `event` repeats what an ongoing episode already said: log it at debug (it is counted).

        `components`: the degraded states that explain the event (None: any active one). The first of
        them that is active counts it, and its `degraded.end` reports the counts.
        """
        names = [components] if isinstance(components, str) else (None if components is None else list(components))
        with self._lock:
            candidates = (
                names if names is not None else [d.name for d in sorted(self._active.values(), key=lambda d: d.since)]
            )
            for name in candidates:
                if name in self._active:
                    self._suppressed[name][event] += 1
                    return True
        return False

    def update(self, name: str, failure: str | None, **details: Any) -> None:
        """`set` when there is a failure reason, else `clear`."""
        if failure:
            self.set(name, failure, **details)
        else:
            self.clear(name, **details)

    def active(self) -> list[Degradation]:
        with self._lock:
            return sorted(self._active.values(), key=lambda d: d.since)
