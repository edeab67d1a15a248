"""The one way an order goes out: journaled intent first, then the request, then its result.

Entries, exits and backstops all send through `OrderDesk`, so the rules hold everywhere:
  * the intent row (deterministic client_order_id) is on disk before the request leaves;
  * every failure becomes a journal state and one log line, never a retry storm: `skipped` (never sent),
    `rejected` (the broker said no), `unknown` (no answer: reconciliation or the next tick looks it up);
  * a market order is polled for a short while until it is final.
Also here: which orders are the bot's own, recognised by their client_order_id alone (`kb-SYMBOL-kind-...`),
so an order whose journal row was lost is still recognised as ours and never mistaken for someone else's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from kronos_bot.broker.base import (
    Broker,
    BrokerUnavailable,
    OrderRejected,
    OrderResult,
    OrderSkipped,
    OrderStatus,
    client_order_id,
)
from kronos_bot.config import Settings
from kronos_bot.logs import get_logger
from kronos_bot.trader.events import NO_EVENTS, TraderEvents
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.records import ORDER_SKIPPED, ORDER_UNKNOWN

BOT_ORDER_PREFIX = "kb-"
BACKSTOP_KIND = "stop"
# Poll interval while waiting (up to broker.fill_timeout_seconds) for a market order to fill.
FILL_POLL_SECONDS = 0.5

log = get_logger("kronos_bot.trader.execution")


def is_own_order(cid: str | None) -> bool:
    return bool(cid) and str(cid).startswith(BOT_ORDER_PREFIX)


def own_kind(cid: str | None) -> str | None:
    """`buy`, `sell` or `stop` for one of our client_order_ids (`kb-BTCUSD-stop-...`), else None."""
    if not is_own_order(cid):
        return None
    parts = str(cid).split("-")
    return parts[2] if len(parts) > 3 else None


def backstop_id_prefix(symbol: str, entry_time: datetime) -> str:
    """Every backstop of one position starts with this (the position is named by its symbol and entry time)."""
    return client_order_id(symbol, entry_time, BACKSTOP_KIND) + "-"


def backstop_seq_of(cid: str) -> int:
    """The sequence number at the end of a backstop's client_order_id (0 when there is none)."""
    tail = cid.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class OrderDesk:
    """Sends journaled intents through the broker and records what comes back."""

    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
        fill_timeout_seconds: float = 10.0,
        fill_poll_seconds: float = FILL_POLL_SECONDS,
        events: TraderEvents = NO_EVENTS,
    ) -> None:
        self.broker = broker
        self.events = events
        self.journal = journal
        self.clock = clock
        self.sleep = sleep
        self.fill_timeout_seconds = fill_timeout_seconds
        self.fill_poll_seconds = fill_poll_seconds

    def record(self, cid: str, result: OrderResult) -> None:
        self.journal.update_order(cid, result, now=self.clock())

    def submit(self, cid: str, purpose: str, symbol: str, send: Callable[[], OrderResult]) -> OrderResult:
        """Send a journaled intent; every failure becomes a journal state + one log line, then re-raises."""
        try:
            result = send()
        except OrderSkipped as exc:
            self.journal.mark_order(cid, ORDER_SKIPPED, str(exc), now=self.clock())
            log.info(
                "order.skipped",
                symbol=symbol,
                purpose=purpose,
                client_order_id=cid,
                reason=exc.reason,
                detail=exc.detail,
            )
            raise
        except OrderRejected as exc:
            self.journal.mark_order(cid, OrderStatus.REJECTED.value, str(exc), now=self.clock())
            log.warning(
                "order.rejected",
                symbol=symbol,
                purpose=purpose,
                client_order_id=cid,
                status_code=exc.status_code,
                error=str(exc),
            )
            raise
        except BrokerUnavailable as exc:
            self.journal.mark_order(cid, ORDER_UNKNOWN, str(exc), now=self.clock())
            log.warning("order.unknown", symbol=symbol, purpose=purpose, client_order_id=cid, error=str(exc))
            raise
        self.record(cid, result)
        log.info(
            "order.submitted",
            symbol=symbol,
            purpose=purpose,
            client_order_id=cid,
            order_id=result.order_id,
            side=result.side.value,
            type=result.type.value,
            notional=result.notional,
            qty=result.qty,
            stop_price=result.stop_price,
            limit_price=result.limit_price,
            status=result.status.value,
        )
        return result

    def await_fill(self, result: OrderResult) -> OrderResult:
        """Poll a just-submitted market order until it is final or the (short) timeout passes."""
        waited = 0.0
        while result.is_open and waited < self.fill_timeout_seconds:
            self.sleep(self.fill_poll_seconds)
            waited += self.fill_poll_seconds
            try:
                result = self.broker.get_order(result.order_id)
            except BrokerUnavailable as exc:
                log.warning(
                    "order.poll_failed", symbol=result.symbol, client_order_id=result.client_order_id, error=str(exc)
                )
        self.record(result.client_order_id, result)
        return result

    def lookup(self, cid: str) -> OrderResult | None:
        """The broker's view of one of our orders by client_order_id, recorded in the journal when found."""
        found = self.broker.get_order_by_client_id(cid)
        if found is not None and self.journal.get_order(cid) is not None:
            self.record(cid, found)
        return found


class DeskUser:
    """A part of the order flow (entries, exits, backstops, closing): it sends through the shared
    OrderDesk and acts under the shared trading lock, so the parts can never race each other."""

    def __init__(self, desk: OrderDesk, settings: Settings, lock: threading.RLock | None = None) -> None:
        self.desk = desk
        self.journal = desk.journal
        self.clock = desk.clock
        self.settings = settings
        self.lock = lock if lock is not None else threading.RLock()

    @property
    def broker(self) -> Broker:
        """Always the desk's broker: one place to swap it (tests stand a dying proxy in for it)."""
        return self.desk.broker


def fee_rate(percent: float) -> Decimal:
    return Decimal(str(percent)) / Decimal(100)
