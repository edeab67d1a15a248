"""The broker-side backstop: exactly one live stop_limit per open position, the one the journal names.

Why it needs care: the backstop is what protects a position while the bot is down, and it also holds the
position's coins at the broker (an open sell order reserves its quantity). A backstop the journal has
lost therefore does two kinds of damage: the real stop sits where the journal does not know, and every
market exit gets 403 "insufficient balance". A crash in the middle of a replace produced exactly that.

Each broker order of a backstop is one `orders` row (purpose `backstop`, linked to its position), and
every step is written before its request goes out:

    intent --place/replace--> open --replaced by the next one--> replaced
       |                        |--cancel_requested--> canceled | filled (the position closes `backstop`)
       |                        `--fills------------> filled
       `-- no answer: unknown -> looked up by client_order_id; never reached the broker -> canceled

`resolve` makes the journal agree with the broker's open orders (one listing per exit tick and per
reconciliation): rows whose outcome is unknown are looked up by client_order_id first, a live backstop
of the position the journal does not name is re-linked, extra ones are cancelled, and ours left over
from another (closed) position are cancelled. When Alpaca refuses to replace a live order, the move
falls back to cancel -> confirm -> place, as steps of the same journaled sequence. Client ids are
`kb-SYMBOL-stop-ENTRYTIME-SEQ`: the position's symbol and entry time plus a sequence that is never reused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from kronos_bot.broker.base import (
    BrokerUnavailable,
    OrderNotFound,
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
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.orders import BACKSTOP_KIND, DeskUser, OrderDesk, backstop_id_prefix, backstop_seq_of, own_kind
from kronos_bot.trader.records import ORDER_CANCEL_REQUESTED, ORDER_INTENT, ORDER_UNKNOWN, OrderRecord, PositionRecord
from kronos_bot.trader.stops import backstop_needs_replace, backstop_prices

# Journal rows of a backstop whose broker-side outcome must be looked up before anything else is sent.
_UNRESOLVED = (ORDER_INTENT, ORDER_UNKNOWN, ORDER_CANCEL_REQUESTED)

log = get_logger("kronos_bot.trader.execution")


@dataclass(frozen=True)
class Cleared:
    """What cancelling a position's backstops before a market exit found: each order's final state."""

    finals: list[OrderResult] = field(default_factory=list)
    confirmed: bool = True  # every one is final at the broker (canceled or filled): its coins are free

    @property
    def filled(self) -> bool:
        """A backstop filled completely: the broker closed the position for us."""
        return any(o.status is OrderStatus.FILLED for o in self.finals)


def own_backstops(orders: Iterable[OrderResult], symbol: str | None = None) -> list[OrderResult]:
    """Our backstop orders among `orders` (by client_order_id), optionally of one symbol."""
    return [
        o for o in orders if own_kind(o.client_order_id) == BACKSTOP_KIND and (symbol is None or o.symbol == symbol)
    ]


# The broker's own words for an order that has ended (a final order never comes back to life).
_FINAL_RAW_STATES = frozenset({"filled", "canceled", "expired", "replaced", "rejected", "done_for_day"})


def _live_now(journal: Journal, orders: Iterable[OrderResult]) -> list[OrderResult]:
    """The orders of a listing taken earlier in this tick minus those the broker has since told us ended
    (we cancelled one, it filled): a listing is a snapshot, and acting twice on an order earns a 422.

    Only the broker's word counts: a row we marked ended on a guess ("not found at the broker" while its
    request was still under way) stays live when the listing shows it, so it is re-linked or cancelled.
    """
    out = []
    for order in orders:
        row = journal.get_order(order.client_order_id)
        if row is None or row.is_pending or (row.raw_status or "") not in _FINAL_RAW_STATES:
            out.append(order)
    return out


class Backstops(DeskUser):
    """Places, moves, re-links and cancels backstops; all through the OrderDesk, all journaled first."""

    def __init__(self, desk: OrderDesk, settings: Settings) -> None:
        super().__init__(desk, settings)

    # ----- keeping one live backstop -----

    def sync(self, position: PositionRecord, live: Sequence[OrderResult] | None = None) -> PositionRecord:
        """Place the backstop at the current stop, or move it when the stop rose enough.

        `live` is the broker's open orders from this tick's one listing: with it, the journal is first made
        to agree with the broker (`resolve`); without it (a backtest's synchronous simulated broker, or
        right after an entry) the journal's link is trusted.
        """
        if not position.is_open:
            return position
        if live is not None:
            position = self.resolve(position, live)
        cfg = self.settings.exits.backstop
        if not cfg.enabled or position.stop_price is None:
            return position
        if position.backstop_order_id is None:
            return self._place(position)
        if backstop_needs_replace(position.backstop_stop, position.stop_price, cfg.replace_step_percent):
            return self._move(position)
        return position

    def resolve(self, position: PositionRecord, live: Sequence[OrderResult]) -> PositionRecord:
        """Make the journal name exactly the one live backstop of `position` (see the module doc)."""
        prefix = backstop_id_prefix(position.symbol, position.entry_time)
        mine = _live_now(self.journal, own_backstops(live, position.symbol))
        for stray in (o for o in mine if not o.client_order_id.startswith(prefix)):
            # Left over from an earlier position in this symbol: it holds coins this position owns.
            final = self._cancel(stray, position_id=None)
            log.warning(
                "backstop.stray_canceled",
                symbol=position.symbol,
                position_id=position.id,
                client_order_id=stray.client_order_id,
                status=final.status.value if final else "not_found",
            )
        candidates = {o.client_order_id: o for o in mine if o.client_order_id.startswith(prefix)}
        for row in self._unresolved_rows(position.id):
            if row.client_order_id in candidates:
                continue
            found = self._look_up(row.client_order_id)
            if found is not None and found.is_open:
                candidates[found.client_order_id] = found
        linked = position.backstop_client_order_id
        keep = candidates.get(linked) if linked else None
        if keep is None and candidates:
            keep = max(candidates.values(), key=lambda o: backstop_seq_of(o.client_order_id))
        for extra in (o for cid, o in candidates.items() if keep is None or cid != keep.client_order_id):
            final = self._cancel(extra, position.id)
            log.warning(
                "backstop.duplicate_canceled",
                symbol=position.symbol,
                position_id=position.id,
                client_order_id=extra.client_order_id,
                kept=keep.client_order_id if keep else None,
                status=final.status.value if final else "not_found",
            )
        if keep is not None:
            if keep.client_order_id != linked or keep.order_id != position.backstop_order_id:
                self._ensure_row(keep, position.id)
                self.desk.record(keep.client_order_id, keep)
                self.journal.set_backstop(
                    position.id,
                    order_id=keep.order_id,
                    client_order_id=keep.client_order_id,
                    stop=keep.stop_price,
                    seq=backstop_seq_of(keep.client_order_id),
                )
                log.warning(
                    "backstop.relinked",
                    symbol=position.symbol,
                    position_id=position.id,
                    client_order_id=keep.client_order_id,
                    order_id=keep.order_id,
                    stop=keep.stop_price,
                    previous_client_order_id=linked,
                )
                return self.journal.get_position(position.id)
            return position
        if position.backstop_order_id is None:
            return position
        # The journal names an order that is no longer open at the broker.
        try:
            current = self.broker.get_order(position.backstop_order_id)
        except OrderNotFound:
            current = None
        if current is not None and position.backstop_client_order_id:
            self.desk.record(position.backstop_client_order_id, current)
        if current is not None and current.status is OrderStatus.FILLED:
            return position  # it sold the position: the exit path closes it as `backstop`
        self.journal.set_backstop(
            position.id, order_id=None, client_order_id=None, stop=None, seq=position.backstop_seq
        )
        log.warning(
            "backstop.lost",
            symbol=position.symbol,
            position_id=position.id,
            client_order_id=position.backstop_client_order_id,
            status=current.raw_status or current.status.value if current else "not_found",
        )
        return self.journal.get_position(position.id)

    def cancel_orphans(self, live: Sequence[OrderResult], open_positions: Sequence[PositionRecord]) -> list[str]:
        """Cancel live backstops of ours that belong to no open position (they hold coins for nothing)."""
        prefixes = {p.symbol: backstop_id_prefix(p.symbol, p.entry_time) for p in open_positions}
        canceled = []
        for order in _live_now(self.journal, own_backstops(live)):
            prefix = prefixes.get(order.symbol)
            if prefix is not None:
                continue  # an open position's: `resolve` re-links it or cancels it as a stray
            row = self.journal.get_order(order.client_order_id)
            final = self._cancel(order, row.position_id if row else None)
            canceled.append(order.client_order_id)
            log.info(
                "reconcile.orphan_canceled",
                symbol=order.symbol,
                client_order_id=order.client_order_id,
                status=final.status.value if final else "not_found",
            )
        return canceled

    # ----- before a market exit -----

    def clear(self, position: PositionRecord, live: Sequence[OrderResult] | None = None) -> Cleared:
        """Cancel every backstop of ours on this position's coins and confirm each is final.

        The one the journal names, rows whose outcome is unknown (a crash mid-replace), and any live one
        of ours in this symbol: all must be canceled or filled before the market sell, or that sell gets
        403. A backstop that filled meanwhile wins: its fill is in the journal and the position closes
        `backstop` at its real price.
        """
        targets: dict[str, OrderResult | None] = {}
        if position.backstop_order_id and position.backstop_client_order_id:
            targets[position.backstop_client_order_id] = self._cancel_by_id(
                position.backstop_client_order_id, position.backstop_order_id
            )
        for row in self._unresolved_rows(position.id, include_open=True):
            if row.client_order_id in targets:
                continue
            found = self._look_up(row.client_order_id)
            if found is not None:
                targets[row.client_order_id] = self._cancel(found, position.id) if found.is_open else found
        for order in _live_now(self.journal, own_backstops(live or (), position.symbol)):
            if order.client_order_id not in targets:
                targets[order.client_order_id] = self._cancel(order, position.id)
        finals = [o for o in targets.values() if o is not None]
        confirmed = all(not o.is_open for o in finals)
        for order in finals:
            log.info(
                "backstop.canceled",
                symbol=position.symbol,
                position_id=position.id,
                client_order_id=order.client_order_id,
                status=order.status.value,
                filled_qty=order.filled_qty,
            )
        if confirmed and position.backstop_order_id is not None:
            self.journal.set_backstop(
                position.id, order_id=None, client_order_id=None, stop=None, seq=position.backstop_seq
            )
        return Cleared(finals, confirmed)

    def refresh(self, position: PositionRecord) -> None:
        """Record the broker's current state of every backstop row of this position that may still change
        or whose journal state is a guess (for closing a position that vanished at the broker)."""
        for row in self.journal.orders_of_position(position.id, purpose="backstop"):
            if row.status in (OrderStatus.FILLED.value, OrderStatus.REPLACED.value, "skipped"):
                continue
            found = self._look_up(row.client_order_id)
            if found is not None and found.is_open:
                self._cancel(found, position.id)  # nothing left to protect: never let it sell later

    # ----- the steps -----

    def _intent(self, position: PositionRecord) -> tuple[int, str, Decimal, Decimal, bool]:
        """Journal the next backstop order and take its sequence number in one transaction."""
        assert position.stop_price is not None
        seq = position.backstop_seq + 1
        cid = client_order_id(position.symbol, position.entry_time, BACKSTOP_KIND, seq)
        stop, limit = backstop_prices(position.stop_price, self.settings.exits.backstop.limit_offset_percent)
        with self.journal.transaction():
            _, created = self.journal.record_order_intent(
                client_order_id=cid,
                symbol=position.symbol,
                side=OrderSide.SELL,
                type=OrderType.STOP_LIMIT,
                purpose="backstop",
                qty=position.qty,
                stop_price=stop,
                limit_price=limit,
                position_id=position.id,
                now=self.desk.clock(),
            )
            self.journal.use_backstop_seq(position.id, seq)
        return seq, cid, stop, limit, created

    def _place(self, position: PositionRecord) -> PositionRecord:
        seq, cid, stop, limit, created = self._intent(position)
        try:
            existing = None if created else self.desk.lookup(cid)
            result = existing or self.desk.submit(
                cid,
                "backstop",
                position.symbol,
                lambda: self.broker.place_stop_limit_sell(position.symbol, position.qty, stop, limit, cid),
            )
        except (OrderSkipped, OrderRejected, BrokerUnavailable):
            self.journal.set_backstop(position.id, order_id=None, client_order_id=None, stop=None, seq=seq)
            return self.journal.get_position(position.id)
        self.journal.set_backstop(position.id, order_id=result.order_id, client_order_id=cid, stop=stop, seq=seq)
        log.info(
            "backstop.placed",
            symbol=position.symbol,
            position_id=position.id,
            stop=stop,
            limit=limit,
            qty=result.qty,
            order_id=result.order_id,
        )
        return self.journal.get_position(position.id)

    def _move(self, position: PositionRecord) -> PositionRecord:
        assert position.backstop_order_id is not None
        old_id, old_cid = position.backstop_order_id, position.backstop_client_order_id
        seq, cid, stop, limit, created = self._intent(position)
        try:
            existing = None if created else self.desk.lookup(cid)
            result = existing or self.desk.submit(
                cid, "backstop", position.symbol, lambda: self.broker.replace_stop_limit(old_id, stop, limit, cid)
            )
        except OrderRejected:
            return self._replace_refused(position, cid, stop, limit, seq)
        except (OrderSkipped, BrokerUnavailable):
            # Outcome unknown: the row says so, and the next tick's `resolve` looks the new id up first.
            return self.journal.get_position(position.id)
        if old_cid:
            with contextlib.suppress(BrokerUnavailable, OrderNotFound):
                self.desk.record(old_cid, self.broker.get_order(old_id))
        return self._moved(position, result, cid, stop, limit, seq, "replace")

    def _replace_refused(
        self, position: PositionRecord, cid: str, stop: Decimal, limit: Decimal, seq: int
    ) -> PositionRecord:
        """The broker would not replace: usually the old order triggered or filled (then there is nothing to
        move), else it refuses replacing this kind of order: cancel it, confirm, then place the new one."""
        assert position.backstop_order_id is not None
        try:
            old = self.broker.get_order(position.backstop_order_id)
        except OrderNotFound:
            old = None
        except BrokerUnavailable:
            return self.journal.get_position(position.id)
        if old is not None and position.backstop_client_order_id:
            self.desk.record(position.backstop_client_order_id, old)
        if old is None or not old.is_open or old.filled_qty > 0:
            if old is None or old.status in (OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.REPLACED):
                self.journal.set_backstop(position.id, order_id=None, client_order_id=None, stop=None, seq=seq)
            return self.journal.get_position(position.id)
        log.info(
            "backstop.replace_refused",
            symbol=position.symbol,
            position_id=position.id,
            client_order_id=position.backstop_client_order_id,
            fallback="cancel_then_place",
        )
        final = self._cancel(old, position.id)
        if final is None or final.is_open or final.filled_qty > 0:
            # Not confirmed gone (or it sold meanwhile): the journal still names it; the next tick resolves.
            return self.journal.get_position(position.id)
        self.journal.set_backstop(position.id, order_id=None, client_order_id=None, stop=None, seq=seq)
        self.journal.mark_order(
            cid,
            ORDER_INTENT,
            "replace refused: placing a new order after cancelling the old one",
            now=self.desk.clock(),
        )
        held = self.journal.get_position(position.id)
        try:
            result = self.desk.submit(
                cid,
                "backstop",
                position.symbol,
                lambda: self.broker.place_stop_limit_sell(position.symbol, held.qty, stop, limit, cid),
            )
        except (OrderSkipped, OrderRejected, BrokerUnavailable):
            return self.journal.get_position(position.id)  # unprotected for one tick: the next sync places
        return self._moved(position, result, cid, stop, limit, seq, "cancel_then_place")

    def _moved(
        self,
        position: PositionRecord,
        result: OrderResult,
        cid: str,
        stop: Decimal,
        limit: Decimal,
        seq: int,
        method: str,
    ) -> PositionRecord:
        """The new backstop is live: the journal names it from now on."""
        self.journal.set_backstop(position.id, order_id=result.order_id, client_order_id=cid, stop=stop, seq=seq)
        log.info(
            "backstop.replaced",
            symbol=position.symbol,
            position_id=position.id,
            stop=stop,
            limit=limit,
            previous_stop=position.backstop_stop,
            order_id=result.order_id,
            method=method,
        )
        return self.journal.get_position(position.id)

    def _look_up(self, cid: str) -> OrderResult | None:
        """The broker's word on a row whose outcome is unknown; a request that never arrived is marked so."""
        found = self.desk.lookup(cid)
        if found is None:
            self.journal.mark_order(cid, OrderStatus.CANCELED.value, "not found at the broker", now=self.desk.clock())
        return found

    def _cancel(self, order: OrderResult, position_id: int | None) -> OrderResult | None:
        """Journal `cancel_requested`, cancel, record the final state (None: the broker does not know it)."""
        self._ensure_row(order, position_id)
        return self._cancel_by_id(order.client_order_id, order.order_id)

    def _cancel_by_id(self, cid: str, order_id: str) -> OrderResult | None:
        self.journal.mark_order(cid, ORDER_CANCEL_REQUESTED, None, now=self.desk.clock())
        final: OrderResult | None
        try:
            final = self.broker.cancel_order(order_id)
        except OrderNotFound:
            final = self.desk.lookup(cid)
        if final is not None:
            self.desk.record(cid, final)
        return final

    def _ensure_row(self, order: OrderResult, position_id: int | None) -> None:
        """A live order of ours without a journal row (the row was lost): journal it before acting on it."""
        if self.journal.get_order(order.client_order_id) is not None:
            if position_id is not None:
                self.journal.link_order(order.client_order_id, position_id)
            return
        self.journal.record_order_intent(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            purpose="backstop",
            qty=order.qty,
            stop_price=order.stop_price,
            limit_price=order.limit_price,
            position_id=position_id,
            now=self.desk.clock(),
        )
        self.desk.record(order.client_order_id, order)
        log.warning(
            "backstop.row_recovered",
            symbol=order.symbol,
            client_order_id=order.client_order_id,
            order_id=order.order_id,
            position_id=position_id,
        )

    def _unresolved_rows(self, position_id: int, *, include_open: bool = False) -> list[OrderRecord]:
        states = _UNRESOLVED + ((OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value) if include_open else ())
        return [
            r
            for r in self.journal.pending_orders()
            if r.position_id == position_id and r.purpose == "backstop" and r.status in states
        ]
