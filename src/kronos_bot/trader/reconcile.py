"""Reconciliation: the broker is the truth; make the journal agree. Run at start and before every entry cycle.

Steps, each idempotent:
  1. Pending order intents (written before a request whose outcome we never saw: crash, timeout,
     restart) are resolved by client_order_id. A filled entry without a position opens it; a further
     partial fill grows it; an intent the broker never received is marked so (after a grace period, so an
     order another thread is sending right now is left alone). An entry whose fill is journaled but whose
     position is not (a crash between the two) opens its position from the broker's view of the order.
  2. Journal positions missing at the broker are closed: `backstop` if our stop_limit filled, else
     `external`. A broker quantity below the journal's becomes the journal's (never sell more than held).
  3. Broker positions the bot did not open are ignored (logged once per symbol and process) unless
     `broker.adopt_external_positions` is set, then adopted with the hard stop / trail from their
     average entry price.
  4. Backstops against the broker's open orders: every open position ends with at most one live
     backstop, the one the journal names (a backstop left live by a crash mid-replace is re-linked,
     extra ones are cancelled; a missing one is placed by the next exit tick); our own backstops left
     open for positions that are already closed (a crash between close and cancel) are cancelled.
     Open orders at the broker that the journal does not know and that are not ours are logged once
     and never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kronos_bot.broker.base import Broker, BrokerUnavailable, OrderResult, OrderSide, OrderStatus, OrderType
from kronos_bot.config import Settings
from kronos_bot.logs import get_logger
from kronos_bot.trader.execution import Executor
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.records import ORDER_INTENT, ORDER_UNKNOWN, OrderRecord, PositionRecord
from kronos_bot.trader.stops import initial_state

# An intent younger than this may still be on its way out from another thread: leave it alone.
INTENT_GRACE_SECONDS = 120.0

log = get_logger("kronos_bot.trader.reconcile")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _journaled_result(record: OrderRecord) -> OrderResult:
    """The journal's copy of a filled order the broker no longer finds: its fill was journaled before the
    crash, so the position is opened from what we recorded rather than not at all."""
    try:
        status = OrderStatus(record.status)
    except ValueError:
        status = OrderStatus.FILLED
    return OrderResult(
        order_id=record.broker_order_id or "",
        client_order_id=record.client_order_id,
        symbol=record.symbol,
        side=OrderSide(record.side),
        type=OrderType(record.type),
        status=status,
        filled_qty=record.filled_qty or Decimal(0),
        filled_avg_price=record.filled_avg_price,
        filled_at=record.filled_at,
    )


@dataclass
class ReconcileReport:
    orders_resolved: list[str] = field(default_factory=list)
    opened: list[PositionRecord] = field(default_factory=list)
    closed: list[PositionRecord] = field(default_factory=list)
    adopted: list[PositionRecord] = field(default_factory=list)
    qty_synced: list[str] = field(default_factory=list)
    ignored_external: list[str] = field(default_factory=list)
    unknown_orders: list[str] = field(default_factory=list)
    orphans_canceled: list[str] = field(default_factory=list)
    ok: bool = True
    error: BrokerUnavailable | None = None  # why it is incomplete


class Reconciler:
    """Holds the 'logged once' memory; create one per process and call `run()` at start and every cycle."""

    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        executor: Executor,
        settings: Settings,
        *,
        price_source: Callable[[str], Decimal | None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        intent_grace_seconds: float = INTENT_GRACE_SECONDS,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.executor = executor
        self.settings = settings
        self.price_source = price_source
        self.clock = clock
        self.intent_grace = timedelta(seconds=intent_grace_seconds)
        self._logged_external: set[str] = set()
        self._logged_orders: set[str] = set()
        self._unmatched_entries: set[str] = set()

    def run(self, now: datetime | None = None) -> ReconcileReport:
        with self.executor.lock:  # never concurrently with the exit monitor or an entry
            return self._run(now or self.clock())

    def _run(self, now: datetime) -> ReconcileReport:
        report = ReconcileReport()
        try:
            self._resolve_orders(report, now)
            self._positions(report, now)
            self._open_orders(report)
        except BrokerUnavailable as exc:
            report.ok = False
            report.error = exc
            log.warning("reconcile.incomplete", error=str(exc))
        log.info(
            "reconcile.done",
            ok=report.ok,
            orders_resolved=len(report.orders_resolved),
            opened=len(report.opened),
            closed=len(report.closed),
            adopted=len(report.adopted),
            qty_synced=len(report.qty_synced),
            ignored_external=report.ignored_external,
            orphans_canceled=len(report.orphans_canceled),
        )
        return report

    # ----- 1. pending orders -----

    def _resolve_orders(self, report: ReconcileReport, now: datetime) -> None:
        for record in self.journal.pending_orders():
            found = self.broker.get_order_by_client_id(record.client_order_id)
            if found is None:
                self._not_at_broker(record, report, now)
                continue
            self.journal.update_order(record.client_order_id, found, now=now)
            if found.status.value != record.status or found.filled_qty != (record.filled_qty or 0):
                report.orders_resolved.append(record.client_order_id)
                log.info(
                    "reconcile.order_resolved",
                    client_order_id=record.client_order_id,
                    purpose=record.purpose,
                    status=found.status.value,
                    previous_status=record.status,
                    filled_qty=found.filled_qty,
                )
            if record.purpose == "entry":
                self._entry(record, found, report)
        for record in self.journal.filled_entries_without_position():
            if record.client_order_id in self._unmatched_entries:
                continue
            found = self.broker.get_order_by_client_id(record.client_order_id)
            if found is not None:
                self.journal.update_order(record.client_order_id, found, now=now)
            self._entry(record, found or _journaled_result(record), report)

    def _not_at_broker(self, record: OrderRecord, report: ReconcileReport, now: datetime) -> None:
        if record.status in (ORDER_INTENT, ORDER_UNKNOWN) and now - record.created_at < self.intent_grace:
            return
        self.journal.mark_order(record.client_order_id, OrderStatus.CANCELED.value, "not found at the broker", now=now)
        report.orders_resolved.append(record.client_order_id)
        log.info(
            "reconcile.order_lost",
            client_order_id=record.client_order_id,
            purpose=record.purpose,
            previous_status=record.status,
        )

    def _entry(self, record: OrderRecord, found: OrderResult, report: ReconcileReport) -> None:
        position = self.journal.position_by_entry_order(record.client_order_id)
        if position is None:
            if found.filled_qty <= 0:
                return
            if self.journal.open_position_for(record.symbol) is not None:
                self._unmatched(record, found)
                return
            refreshed = self.journal.get_order(record.client_order_id) or record
            opened = self.executor.open_from_fill(refreshed, found, before_qty=None)
            if opened is not None:
                report.opened.append(opened)
                log.info(
                    "reconcile.position_recovered",
                    symbol=record.symbol,
                    position_id=opened.id,
                    client_order_id=record.client_order_id,
                )
            return
        if position.is_open:
            settled = self.executor.settle_entry(position, result=found)
            if not settled.is_open:
                report.closed.append(settled)

    def _unmatched(self, record: OrderRecord, found: OrderResult) -> None:
        """A filled entry of ours while another position of the symbol is open: never merged by guesswork
        (which coins the backstop covers would be unclear); said once, loudly, for the operator to look at."""
        if record.client_order_id in self._unmatched_entries:
            return
        self._unmatched_entries.add(record.client_order_id)
        log.error(
            "reconcile.entry_unmatched",
            symbol=record.symbol,
            client_order_id=record.client_order_id,
            filled_qty=found.filled_qty,
            detail="a filled entry without a position while another position of this symbol is open",
        )

    # ----- 2 + 3. positions -----

    def _positions(self, report: ReconcileReport, now: datetime) -> None:
        held = {p.symbol: p for p in self.broker.get_positions()}
        journal_open = {p.symbol: p for p in self.journal.open_positions()}
        for symbol, position in journal_open.items():
            at_broker = held.get(symbol)
            if at_broker is None or at_broker.qty <= 0:
                closed = self.executor.close_vanished(position, now=now, price=self._price(symbol))
                if closed is not None:
                    report.closed.append(closed)
                    log.info(
                        "reconcile.position_closed", symbol=symbol, position_id=position.id, reason=closed.exit_reason
                    )
            elif at_broker.qty < position.qty:
                self.journal.update_qty(position.id, at_broker.qty)
                report.qty_synced.append(symbol)
                log.info(
                    "reconcile.qty_synced",
                    symbol=symbol,
                    position_id=position.id,
                    journal_qty=position.qty,
                    broker_qty=at_broker.qty,
                )
        for symbol, at_broker in held.items():
            if symbol in journal_open or at_broker.qty <= 0:
                continue
            if self.settings.broker.adopt_external_positions:
                report.adopted.append(self._adopt(symbol, at_broker.qty, at_broker.avg_entry_price, now))
            else:
                report.ignored_external.append(symbol)
                if symbol not in self._logged_external:
                    self._logged_external.add(symbol)
                    log.info(
                        "reconcile.external_ignored",
                        symbol=symbol,
                        qty=at_broker.qty,
                        detail="not opened by the bot; set broker.adopt_external_positions to manage it",
                    )

    def _adopt(self, symbol: str, qty: Decimal, avg_price: Decimal, now: datetime) -> PositionRecord:
        price = avg_price if avg_price > 0 else (self._price(symbol) or Decimal(0))
        position = self.journal.open_position(
            symbol=symbol,
            entry_time=now,
            entry_price=price,
            entry_filled_qty=qty,
            entry_cost=qty * price,
            qty=qty,
            stop=initial_state(price, now, self.settings.exits),
            entry_fee=Decimal(0),
            external=True,
        )
        log.info(
            "reconcile.adopted",
            symbol=symbol,
            position_id=position.id,
            qty=qty,
            entry_price=price,
            stop=position.stop_price,
        )
        return self.executor.sync_backstop(position)

    # ----- 4. open orders and backstops -----

    def _open_orders(self, report: ReconcileReport) -> None:
        live = self.broker.get_open_orders()
        for position in self.journal.open_positions():
            # Re-link or cancel only: a missing backstop is placed by the next exit tick, at the current stop.
            self.executor.backstops.resolve(position, live)
        report.orphans_canceled = self.executor.backstops.cancel_orphans(live, self.journal.open_positions())
        for order in live:
            if self.journal.get_order(order.client_order_id) is not None:
                continue
            if order.client_order_id not in self._logged_orders:
                self._logged_orders.add(order.client_order_id)
                report.unknown_orders.append(order.client_order_id)
                log.info(
                    "reconcile.unknown_order",
                    symbol=order.symbol,
                    client_order_id=order.client_order_id,
                    side=order.side.value,
                    type=order.type.value,
                )

    def _price(self, symbol: str) -> Decimal | None:
        if self.price_source is None:
            return None
        try:
            return self.price_source(symbol)
        except Exception:
            return None
