"""Exits: a position the stop rules want closed is sold, after its coins are freed from our own stops.

Order of the steps, each journaled: follow up a partial entry (cancel its unfilled rest), cancel every
backstop of ours on the coins and confirm each is final (a sell while one rests would get 403), then
market-sell the broker's free quantity, topping up a partial fill. A backstop that filled meanwhile wins
(the position closes `backstop` at its real fill). Coins held by an order of ours the journal lost, or a
403 "insufficient balance", free the coins once and sell again -- never a retry loop; coins held by
someone else's order are said once and tried again on the next tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

from kronos_bot.broker.base import (
    ZERO,
    BrokerPosition,
    BrokerUnavailable,
    OrderRejected,
    OrderResult,
    OrderSide,
    OrderSkipped,
    OrderStatus,
    OrderType,
    client_order_id,
)
from kronos_bot.config import Settings
from kronos_bot.logs import get_logger
from kronos_bot.trader.backstops import Backstops
from kronos_bot.trader.closing import Closer
from kronos_bot.trader.entries import Entries
from kronos_bot.trader.orders import DeskUser, OrderDesk, own_kind
from kronos_bot.trader.records import PositionRecord
from kronos_bot.trader.stops import ExitReason

# A partially filled exit whose remainder was cancelled is topped up at most this many times.
MAX_EXIT_ORDERS = 3

log = get_logger("kronos_bot.trader.execution")


class Exits(DeskUser):
    """Sells positions (see the module doc); the close itself is written by the Closer."""

    def __init__(
        self,
        desk: OrderDesk,
        backstops: Backstops,
        closer: Closer,
        entries: Entries,
        settings: Settings,
        lock: threading.RLock,
    ) -> None:
        super().__init__(desk, settings, lock)
        self.backstops = backstops
        self.closer = closer
        self.entries = entries
        # Positions whose exit is blocked by orders that are not ours: said once, not every tick.
        self._blocked: set[int] = set()

    def exit(
        self,
        position: PositionRecord,
        reason: ExitReason,
        *,
        price: Decimal | None = None,
        now: datetime | None = None,
        live: Sequence[OrderResult] | None = None,
    ) -> PositionRecord | None:
        """Close a position: cancel (and confirm) every backstop holding its coins, sell the broker's free
        quantity, record P&L from the fills. None = not closed (yet): the next tick tries again."""
        with self.lock:
            return self._exit(position, reason, price, now or self.clock(), live)

    def _exit(
        self,
        position: PositionRecord,
        reason: ExitReason,
        price: Decimal | None,
        now: datetime,
        live: Sequence[OrderResult] | None,
    ) -> PositionRecord | None:
        try:
            position = self.entries.settle_entry(position, cancel_open=True)
            if not position.is_open:
                return position
            cleared = self.backstops.clear(position, live)
            if not cleared.confirmed:
                self._deferred(
                    position, reason, "the backstop's cancel is not confirmed yet; selling now would hit its coins"
                )
                return None
            for pending in self.closer.pending_exit_orders(position):
                if pending.is_open:
                    log.info("exit.pending", symbol=position.symbol, client_order_id=pending.client_order_id)
                    return None
            broker_position = self.broker.get_position(position.symbol)
        except BrokerUnavailable as exc:
            self._deferred(position, reason, str(exc))
            return None
        if cleared.filled:
            return self._close(position, ExitReason.BACKSTOP, now)
        if broker_position is None or broker_position.qty <= 0:
            if self.journal.sell_fills(position.id):
                return self._close(position, self.closer.reason_of_fills(position, reason), now)
            return self.closer.close_vanished(position, now=now, price=price)
        held = self._free_qty(position, broker_position)
        if held <= 0:
            # The coins are there but open orders hold them (one of ours the journal does not know).
            freed = self._try_free_coins(position, reason)
            if freed is None:
                return None
            held = freed
            if held <= 0:
                self._note_blocked(position, reason, "the position's coins are held by orders that are not ours")
                return None
        outcome = self._sell(position, held, reason, price, now)
        if isinstance(outcome, PositionRecord) or outcome is None:
            return outcome
        if not self.journal.sell_fills(position.id):
            return None
        return self._close(position, reason, now)

    def _sell(
        self, position: PositionRecord, held: Decimal, reason: ExitReason, price: Decimal | None, now: datetime
    ) -> PositionRecord | bool | None:
        """Market-sell `held`, topping up a partial fill; True when something sold (close from the fills),
        None when nothing could be sold this tick, a PositionRecord when the position was closed here."""
        freed = False
        for attempt in range(MAX_EXIT_ORDERS):
            cid = client_order_id(position.symbol, now, OrderSide.SELL, seq=attempt or None)
            _, created = self.journal.record_order_intent(
                client_order_id=cid,
                symbol=position.symbol,
                side=OrderSide.SELL,
                type=OrderType.MARKET,
                purpose="exit",
                qty=held,
                position_id=position.id,
                reason=reason.value,
                now=self.clock(),
            )
            try:
                existing = None if created else self.desk.lookup(cid)
                result = existing or self.desk.submit(
                    cid, "exit", position.symbol, self._seller(position.symbol, held, cid)
                )
            except OrderSkipped as exc:
                if self.journal.sell_fills(position.id):
                    return True
                if exc.reason in ("below_min_order_size", "zero_qty"):
                    return self.closer.close_dust(position, price, now)
                return None
            except OrderRejected as exc:
                if exc.status_code == 403 and not freed:
                    # Insufficient balance: something of ours still holds the coins. Free them once, then retry.
                    freed = True
                    now_free = self._try_free_coins(position, reason)
                    if now_free is None:
                        return None
                    held = now_free
                    if held > 0:
                        continue
                    if self.journal.sell_fills(position.id):
                        return True
                    return self.closer.close_vanished(position, now=now, price=price)
                self._note_blocked(position, reason, str(exc))
                return None
            except BrokerUnavailable:
                return None
            result = self.desk.await_fill(result)
            if result.is_open:
                log.info("exit.pending", symbol=position.symbol, client_order_id=cid, filled_qty=result.filled_qty)
                return None
            log.info(
                "order.filled",
                symbol=position.symbol,
                client_order_id=cid,
                order_id=result.order_id,
                side="sell",
                filled_qty=result.filled_qty,
                filled_avg_price=result.filled_avg_price,
                status=result.status.value,
            )
            held -= result.filled_qty
            if held <= 0 or result.status is OrderStatus.FILLED:
                break
        self._blocked.discard(position.id)
        return True

    def _deferred(self, position: PositionRecord, reason: ExitReason, error: str) -> None:
        log.warning("exit.deferred", symbol=position.symbol, position_id=position.id, reason=reason.value, error=error)

    def _try_free_coins(self, position: PositionRecord, reason: ExitReason) -> Decimal | None:
        """`_free_coins`, or None (logged) when the broker cannot be reached: the next tick tries again."""
        try:
            return self._free_coins(position)
        except BrokerUnavailable as exc:
            self._deferred(position, reason, str(exc))
            return None

    def _free_coins(self, position: PositionRecord) -> Decimal:
        """After a 403 on an exit: cancel every sell of ours holding this symbol's coins (backstops, an old
        exit the journal lost), confirm each, and return the quantity now free to sell."""
        orders = self.broker.get_open_orders(position.symbol)
        self.backstops.clear(position, orders)
        for order in orders:
            if own_kind(order.client_order_id) == "sell" and order.is_open:
                final = self.broker.cancel_order(order.order_id)
                if self.journal.get_order(order.client_order_id) is not None:
                    self.desk.record(order.client_order_id, final)
                log.info(
                    "exit.stale_sell_canceled",
                    symbol=position.symbol,
                    client_order_id=order.client_order_id,
                    status=final.status.value,
                    filled_qty=final.filled_qty,
                )
        log.info("exit.coins_freed", symbol=position.symbol, position_id=position.id, orders=len(orders))
        return self._free_qty(position, self.broker.get_position(position.symbol))

    def _note_blocked(self, position: PositionRecord, reason: ExitReason, error: str) -> None:
        if position.id in self._blocked:
            log.debug("exit.blocked", symbol=position.symbol, position_id=position.id, error=error)
            return
        self._blocked.add(position.id)
        log.warning(
            "exit.blocked",
            symbol=position.symbol,
            position_id=position.id,
            reason=reason.value,
            error=error,
            effect="the exit is tried again on the next tick",
        )

    def _seller(self, symbol: str, qty: Decimal, cid: str) -> Callable[[], OrderResult]:
        return lambda: self.broker.sell_qty(symbol, qty, cid)

    def _free_qty(self, position: PositionRecord, broker_position: BrokerPosition | None) -> Decimal:
        """What may be sold now: the broker's free quantity (not held by open orders), at most the journal's."""
        if broker_position is None:
            return ZERO
        free = broker_position.qty if broker_position.qty_available is None else broker_position.qty_available
        return max(ZERO, min(free, broker_position.qty, position.qty))

    def _close(self, position: PositionRecord, reason: ExitReason, now: datetime) -> PositionRecord:
        self._blocked.discard(position.id)
        return self.closer.close(position, reason, now)
