"""The order flow as one object: entries, exits and backstops sharing one journal, broker and lock.

The rules that make it safe live in the parts: `orders` (intent first, every failure a journal state,
our own orders known by their client_order_id), `entries` (never twice, fees in the coin), `backstops`
(exactly one live stop per position, the one the journal names), `exits` (free the coins, then sell the
free quantity) and `closing` (P&L from every fill the journal recorded; ours is never `external`). This
facade wires them, holds the lock that keeps the entry cycle, the exit monitor and reconciliation from
acting at once, and is what the trader, reconciliation and the backtest call. The decisions themselves
come from `engine` and `stops`; everything here is I/O at the edge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from kronos_bot.broker.base import Broker, OrderResult
from kronos_bot.config import Settings
from kronos_bot.domain import Decision
from kronos_bot.trader.backstops import Backstops
from kronos_bot.trader.closing import Closer
from kronos_bot.trader.engine import RiskState
from kronos_bot.trader.entries import Entries, EntryOutcome
from kronos_bot.trader.events import NO_EVENTS, TraderEvents
from kronos_bot.trader.exits import Exits
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.orders import FILL_POLL_SECONDS, OrderDesk
from kronos_bot.trader.records import OrderRecord, PositionRecord
from kronos_bot.trader.stops import ExitReason

__all__ = ["EntryOutcome", "Executor"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Executor:
    """Carries out entries and exits through a Broker, journaling every step (see the module doc)."""

    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
        fill_timeout_seconds: float | None = None,
        fill_poll_seconds: float = FILL_POLL_SECONDS,
        events: TraderEvents = NO_EVENTS,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.settings = settings
        self.clock = clock
        # One trading action at a time: the entry cycle, the exit monitor and reconciliation run in different
        # scheduler threads and must not, e.g., close as `external` a position the monitor is selling.
        self.lock = threading.RLock()
        self.desk = OrderDesk(
            broker,
            journal,
            clock=clock,
            sleep=sleep,
            # None: the config's broker.fill_timeout_seconds.
            fill_timeout_seconds=(
                settings.broker.fill_timeout_seconds if fill_timeout_seconds is None else fill_timeout_seconds
            ),
            fill_poll_seconds=fill_poll_seconds,
            events=events,
        )
        self.backstops = Backstops(self.desk, settings)
        self.closer = Closer(self.desk, self.backstops, settings, self.lock)
        self.entries = Entries(self.desk, self.backstops, self.closer, settings, self.lock)
        self.exits = Exits(self.desk, self.backstops, self.closer, self.entries, settings, self.lock)

    def risk_state(self, now: datetime) -> RiskState:
        return self.entries.risk_state(now)

    def execute(
        self,
        decisions: Sequence[Decision],
        cycle_time: datetime,
        decision_ids: Sequence[int | None] = (),
        price_hints: Mapping[str, Decimal] | None = None,
    ) -> list[EntryOutcome]:
        return self.entries.execute(decisions, cycle_time, decision_ids, price_hints)

    def enter(
        self,
        decision: Decision,
        *,
        cycle_time: datetime,
        decision_id: int | None = None,
        price_hint: Decimal | None = None,
    ) -> EntryOutcome:
        return self.entries.enter(decision, cycle_time=cycle_time, decision_id=decision_id, price_hint=price_hint)

    def open_from_fill(
        self, record: OrderRecord, result: OrderResult, *, before_qty: Decimal | None, tier: str | None = None
    ) -> PositionRecord | None:
        return self.entries.open_from_fill(record, result, before_qty=before_qty, tier=tier)

    def settle_entry(
        self, position: PositionRecord, *, cancel_open: bool = False, result: OrderResult | None = None
    ) -> PositionRecord:
        return self.entries.settle_entry(position, cancel_open=cancel_open, result=result)

    def sync_backstop(self, position: PositionRecord, live: Sequence[OrderResult] | None = None) -> PositionRecord:
        """Place the broker-side stop_limit at the current stop, or move it up when the stop rose enough
        (`live` = this tick's open orders at the broker, see `Backstops.sync`)."""
        with self.lock:
            return self.backstops.sync(position, live)

    def exit(
        self,
        position: PositionRecord,
        reason: ExitReason,
        *,
        price: Decimal | None = None,
        now: datetime | None = None,
        live: Sequence[OrderResult] | None = None,
    ) -> PositionRecord | None:
        return self.exits.exit(position, reason, price=price, now=now, live=live)

    def close_vanished(
        self, position: PositionRecord, *, now: datetime | None = None, price: Decimal | None = None
    ) -> PositionRecord | None:
        return self.closer.close_vanished(position, now=now, price=price)
