"""What the trader tells the world besides its log: notifications, metrics and the state `status` reads.

The trading code calls one `TraderEvents` object at the moments that matter (a position opened or closed,
a part went down or came back, a cycle or an exit tick finished, the account was read, the trader started
or stopped). `EventHub` hands each call to every listener and isolates them: a listener that raises is
logged once (`events.listener_failed`) and never reaches the trading path; listeners must not block
(the notifier only enqueues, the metrics only set numbers). `NO_EVENTS` is the default everywhere, so
the backtest and the tests that do not care pay nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from kronos_bot.broker.base import Account
from kronos_bot.domain import Decision
from kronos_bot.logs import get_logger
from kronos_bot.trader.records import PositionRecord

log = get_logger("kronos_bot.trader.events")


@dataclass(frozen=True)
class DegradedChange:
    """A part went down (`active`) or came back; `seconds` is how long it was down (on the way back)."""

    component: str
    active: bool
    reason: str
    since: datetime
    at: datetime
    seconds: float | None = None


@dataclass(frozen=True)
class CycleDecision:
    symbol: str
    action: str
    tier: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class CycleFinished:
    """One entry cycle's outcome, as metrics and `status` need it."""

    started_at: datetime
    seconds: float
    status: str  # ok | partial | error
    decisions: tuple[CycleDecision, ...] = ()
    entered: int = 0


@dataclass(frozen=True)
class TraderStarted:
    mode: str  # dry-run | paper | live
    broker: str
    symbols: tuple[str, ...]
    open_positions: int
    degraded: tuple[str, ...] = ()


@dataclass(frozen=True)
class DailySummary:
    """The UTC day before the summary hour: what was realized, what is open, how the forecasts did."""

    day: str  # ISO date
    realized_pnl: Decimal
    trades: int
    wins: int
    open_positions: tuple[PositionRecord, ...] = ()
    equity: Decimal | None = None
    skill_line: str | None = None


class TraderEvents(Protocol):
    def trader_started(self, event: TraderStarted) -> None: ...
    def trader_stopped(self, reason: str, open_positions: int) -> None: ...
    def position_opened(self, position: PositionRecord) -> None: ...
    def position_closed(self, position: PositionRecord) -> None: ...
    def degraded(self, change: DegradedChange) -> None: ...
    def cycle_finished(self, event: CycleFinished) -> None: ...
    def exit_tick(self, seconds: float, closed: int) -> None: ...
    def account_seen(self, account: Account, at: datetime) -> None: ...
    def daily_summary(self, summary: DailySummary) -> None: ...


class NoEvents:
    """Listens to nothing (the default of every part)."""

    def trader_started(self, event: TraderStarted) -> None:
        return None

    def trader_stopped(self, reason: str, open_positions: int) -> None:
        return None

    def position_opened(self, position: PositionRecord) -> None:
        return None

    def position_closed(self, position: PositionRecord) -> None:
        return None

    def degraded(self, change: DegradedChange) -> None:
        return None

    def cycle_finished(self, event: CycleFinished) -> None:
        return None

    def exit_tick(self, seconds: float, closed: int) -> None:
        return None

    def account_seen(self, account: Account, at: datetime) -> None:
        return None

    def daily_summary(self, summary: DailySummary) -> None:
        return None


NO_EVENTS = NoEvents()


class EventHub(NoEvents):
    """Every listener hears every event; one that raises is logged once per (listener, event) and skipped."""

    def __init__(self, listeners: Iterable[TraderEvents] = ()) -> None:
        self.listeners: list[TraderEvents] = list(listeners)
        self._failed: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    def add(self, listener: TraderEvents) -> None:
        self.listeners.append(listener)

    def _emit(self, name: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, name)(*args)
            except Exception as exc:
                key = (id(listener), name)
                with self._lock:
                    first = key not in self._failed
                    self._failed.add(key)
                (log.exception if first else log.debug)(
                    "events.listener_failed",
                    listener=type(listener).__name__,
                    trader_event=name,
                    error=f"{type(exc).__name__}: {exc}",
                )

    def trader_started(self, event: TraderStarted) -> None:
        self._emit("trader_started", event)

    def trader_stopped(self, reason: str, open_positions: int) -> None:
        self._emit("trader_stopped", reason, open_positions)

    def position_opened(self, position: PositionRecord) -> None:
        self._emit("position_opened", position)

    def position_closed(self, position: PositionRecord) -> None:
        self._emit("position_closed", position)

    def degraded(self, change: DegradedChange) -> None:
        self._emit("degraded", change)

    def cycle_finished(self, event: CycleFinished) -> None:
        self._emit("cycle_finished", event)

    def exit_tick(self, seconds: float, closed: int) -> None:
        self._emit("exit_tick", seconds, closed)

    def account_seen(self, account: Account, at: datetime) -> None:
        self._emit("account_seen", account, at)

    def daily_summary(self, summary: DailySummary) -> None:
        self._emit("daily_summary", summary)


def summarize_day(
    now: datetime,
    closed: Sequence[PositionRecord],
    open_positions: Sequence[PositionRecord],
    *,
    equity: Decimal | None = None,
    skill_line: str | None = None,
) -> DailySummary:
    """The daily summary of the positions closed in the 24 hours before `now` (pure)."""
    done = [p for p in closed if p.pnl is not None]
    return DailySummary(
        day=now.date().isoformat(),
        realized_pnl=sum((p.pnl for p in done if p.pnl is not None), Decimal(0)),
        trades=len(done),
        wins=sum(1 for p in done if p.pnl is not None and p.pnl > 0),
        open_positions=tuple(open_positions),
        equity=equity,
        skill_line=skill_line,
    )


def cycle_decisions(decisions: Sequence[Decision]) -> tuple[CycleDecision, ...]:
    """`Decision`s as the event carries them (value types only)."""
    return tuple(
        CycleDecision(d.symbol, d.action.value, d.tier.value if d.tier else None, tuple(d.reasons)) for d in decisions
    )
