"""Closing a position in the journal, from what the broker says happened to its coins.

Why one place: a position's exit is made of every sell of it that filled -- a market exit, a backstop,
a backstop replaced after a partial fill, an exit sent just before a crash -- so P&L comes from the
journal's rows of those orders (as the broker reported them), never from what this process happened to
see. And an own order is never taken for someone else's: a position that vanished at the broker is
`external` only when none of our orders explains it.
"""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal

from kronos_bot.broker.base import ZERO, BrokerUnavailable, OrderResult, OrderStatus
from kronos_bot.config import Settings
from kronos_bot.logs import get_logger
from kronos_bot.trader.backstops import Backstops
from kronos_bot.trader.orders import DeskUser, OrderDesk, fee_rate
from kronos_bot.trader.records import PositionRecord
from kronos_bot.trader.stops import ExitReason

log = get_logger("kronos_bot.trader.execution")


class Closer(DeskUser):
    """Writes a position's close (P&L, fees, reason) from the journal's record of its sells."""

    def __init__(self, desk: OrderDesk, backstops: Backstops, settings: Settings, lock: threading.RLock) -> None:
        super().__init__(desk, settings, lock)
        self.backstops = backstops

    def pending_exit_orders(self, position: PositionRecord) -> list[OrderResult]:
        """Exit orders of earlier ticks that were not final then, refreshed from the broker."""
        out = []
        for record in self.journal.pending_orders():
            if record.position_id != position.id or record.purpose != "exit":
                continue
            found = self.desk.lookup(record.client_order_id)
            if found is None:
                self.journal.mark_order(record.client_order_id, OrderStatus.CANCELED.value, "not found at broker")
                continue
            out.append(found)
        return out

    def reason_of_fills(self, position: PositionRecord, fallback: ExitReason) -> ExitReason:
        """Why the coins left: a backstop fill makes it `backstop`, else the reason the exit order was sent with."""
        fills = self.journal.sell_fills(position.id)
        if any(f.purpose == "backstop" for f in fills):
            return ExitReason.BACKSTOP
        for f in reversed(fills):
            if f.reason:
                try:
                    return ExitReason(f.reason)
                except ValueError:
                    break
        return fallback

    def close(self, position: PositionRecord, reason: ExitReason, now: datetime) -> PositionRecord:
        """Close with the P&L of every sell of this position that filled, as the journal recorded them."""
        fills = self.journal.sell_fills(position.id)
        qty = sum((f.filled_qty or ZERO for f in fills), ZERO)
        gross = ZERO
        fee = ZERO
        estimated = False
        for f in fills:
            notional = (f.filled_qty or ZERO) * (f.filled_avg_price or ZERO)
            gross += notional
            if f.fee is not None and f.fee_asset == "USD":
                fee += f.fee
            else:
                fee += notional * self._exit_fee_rate(position)
                estimated = True
        price = gross / qty if qty else None
        exit_time = max((f.filled_at for f in fills if f.filled_at), default=now)
        closed = self.journal.close_position(
            position.id,
            exit_time=exit_time,
            exit_price=price,
            exit_qty=qty,
            reason=reason.value,
            exit_fee=fee,
            proceeds=gross - fee,
        )
        self._log_closed(closed, estimated)
        return closed

    def _exit_fee_rate(self, position: PositionRecord) -> Decimal:
        """Alpaca's order endpoint does not report fees: assume the rate observed on the entry fill."""
        if position.entry_filled_qty > 0 and position.entry_fee > 0:
            return position.entry_fee / position.entry_filled_qty
        return _fee_rate_of(self.settings)

    def close_dust(self, position: PositionRecord, price: Decimal | None, now: datetime) -> PositionRecord:
        """A remainder below the asset's minimum order size cannot be sold: write it off at the last price."""
        value = position.qty * (price or ZERO)
        closed = self.journal.close_position(
            position.id,
            exit_time=now,
            exit_price=price,
            exit_qty=ZERO,
            reason=ExitReason.DUST.value,
            exit_fee=ZERO,
            proceeds=value,
        )
        self._log_closed(closed, True)
        return closed

    def close_vanished(
        self, position: PositionRecord, *, now: datetime | None = None, price: Decimal | None = None
    ) -> PositionRecord | None:
        """The broker holds nothing for a journal position. Our own sells explain it when they filled: a
        backstop (reason `backstop`, at its real fill price) or an exit sent before a crash (its reason);
        only when none of ours did is it `external` (closed by hand, liquidated), valued at the last price."""
        now = now or self.clock()
        with self.lock:
            try:
                self.backstops.refresh(position)
                self.pending_exit_orders(position)
            except BrokerUnavailable:
                return None
            if self.journal.sell_fills(position.id):
                return self.close(position, self.reason_of_fills(position, ExitReason.EXTERNAL), now)
            value_price = price if price is not None else position.hwm
            closed = self.journal.close_position(
                position.id,
                exit_time=now,
                exit_price=price,
                exit_qty=position.qty,
                reason=ExitReason.EXTERNAL.value,
                exit_fee=ZERO,
                proceeds=position.qty * value_price,
            )
            self._log_closed(closed, True)
            return closed

    def _log_closed(self, closed: PositionRecord, estimated: bool) -> None:
        hold_hours = None
        if closed.exit_time is not None:
            hold_hours = round((closed.exit_time - closed.entry_time).total_seconds() / 3600, 3)
        log.info(
            "position.closed",
            symbol=closed.symbol,
            position_id=closed.id,
            reason=closed.exit_reason,
            entry_price=closed.entry_price,
            exit_price=closed.exit_price,
            qty=closed.exit_qty,
            cost=closed.entry_cost,
            proceeds=closed.proceeds,
            fees_usd=closed.exit_fee,
            fee_qty=closed.entry_fee,
            pnl=closed.pnl,
            pnl_percent=closed.pnl_percent,
            hold_hours=hold_hours,
            fees_estimated=estimated,
        )
        self.desk.events.position_closed(closed)


def _fee_rate_of(settings: Settings) -> Decimal:
    return fee_rate(settings.broker.sim.fee_percent)
