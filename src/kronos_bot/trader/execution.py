"""Order flow between the engine's decisions, the broker and the journal: entries, exits, backstops.

The rules that make it safe, in one place:
  * Intent first: every order is written to the journal (status `intent`) before its request goes out,
    with a deterministic client_order_id; a crash anywhere leaves a row that reconciliation resolves by
    asking the broker for that client_order_id.
  * Never twice: a re-run of the same cycle finds the intent and resolves it instead of resubmitting.
  * Fees in the coin: the held quantity comes from the broker's position (before/after the buy), never
    from filled qty; exits sell min(broker qty, journal qty), so the bot never sells coins it did not buy.
  * Backstop: a GTC stop_limit sell at the current stop, moved up in steps (`backstops`); every backstop
    of ours on the coins is cancelled and confirmed before a market exit, and if one filled meanwhile the
    broker's state wins (exit reason `backstop`, at its real fill price).
  * P&L from the journal: a position's exit is made of every sell of it that filled, whichever order the
    coins left through; an own order is never taken for someone else's (`external`).
Everything here is I/O at the edge; the decisions themselves come from `engine` and `exits`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from kronos_bot.trader.backstops import Backstops
from kronos_bot.broker.base import (
    QTY_STEP_DEFAULT,
    ZERO,
    Broker,
    BrokerPosition,
    BrokerUnavailable,
    OrderRejected,
    OrderResult,
    OrderSide,
    OrderSkipped,
    OrderStatus,
    OrderType,
    client_order_id,
    round_down,
)
from kronos_bot.config import Settings
from kronos_bot.domain import Action, Decision
from kronos_bot.trader.engine import RiskState
from kronos_bot.trader.stops import ExitReason, initial_state
from kronos_bot.trader.journal import ORDER_UNKNOWN, Journal, OrderRecord, PositionRecord
from kronos_bot.logs import get_logger
from kronos_bot.trader.orders import FILL_POLL_SECONDS, OrderDesk, fee_rate, own_kind

# A partially filled exit whose remainder was cancelled is topped up at most this many times.
MAX_EXIT_ORDERS = 3

log = get_logger("kronos_bot.trader.execution")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EntryOutcome:
    """What became of one ENTER decision: a position, or a status (`skipped`, `rejected`, `pending`...)."""

    symbol: str
    status: str
    position: PositionRecord | None = None
    order: OrderResult | None = None
    reason: str = ""


class Executor:
    """Carries out entries and exits through a Broker, journaling every step. Thread-safe via the journal."""

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
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.settings = settings
        self.clock = clock
        # None: the config's broker.fill_timeout_seconds.
        self.desk = OrderDesk(
            broker, journal, clock=clock, sleep=sleep,
            fill_timeout_seconds=(
                settings.broker.fill_timeout_seconds if fill_timeout_seconds is None else fill_timeout_seconds
            ),
            fill_poll_seconds=fill_poll_seconds,
        )
        self.backstops = Backstops(self.desk, settings)
        # One trading action at a time: the entry cycle, the exit monitor and reconciliation run in different
        # scheduler threads and must not, e.g., close as `external` a position the monitor is selling.
        self.lock = threading.RLock()
        # Positions whose exit is blocked (403 even after freeing the coins): said once, not every tick.
        self._blocked: set[int] = set()

    def _fee_rate(self) -> Decimal:
        return fee_rate(self.settings.broker.sim.fee_percent)

    # ----- what the engine needs -----

    def risk_state(self, now: datetime) -> RiskState:
        """The engine's RiskState from the journal and the broker's account (one account request).

        Symbols with an entry order still pending at the broker count as open, so a slow fill is never
        followed by a second entry in the next cycle. Raises BrokerUnavailable when the account cannot be read.
        """
        open_symbols = {p.symbol for p in self.journal.open_positions()}
        open_symbols |= {o.symbol for o in self.journal.pending_orders() if o.purpose == "entry"}
        return RiskState(
            open_symbols=frozenset(open_symbols),
            account=self.broker.get_account(),
            last_exit_at=self.journal.last_exit_times(),
            daily_realized_pnl=self.journal.realized_pnl_for_day(now),
        )

    # ----- entries -----

    def execute(
        self,
        decisions: Sequence[Decision],
        cycle_time: datetime,
        decision_ids: Sequence[int | None] = (),
        price_hints: Mapping[str, Decimal] | None = None,
    ) -> list[EntryOutcome]:
        """Carry out every ENTER of one cycle (SKIPs are ignored)."""
        ids = list(decision_ids) + [None] * (len(decisions) - len(decision_ids))
        hints = price_hints or {}
        return [
            self.enter(d, cycle_time=cycle_time, decision_id=i, price_hint=hints.get(d.symbol))
            for d, i in zip(decisions, ids, strict=True)
            if d.action is Action.ENTER
        ]

    def enter(
        self,
        decision: Decision,
        *,
        cycle_time: datetime,
        decision_id: int | None = None,
        price_hint: Decimal | None = None,
    ) -> EntryOutcome:
        """Market-buy `decision.notional` of `decision.symbol` and open the journal position.

        `cycle_time` is the scheduled cycle time (it makes the client_order_id); `price_hint` (the last
        close) lets the broker skip buys below the asset's min_order_size before sending them.
        """
        if decision.action is not Action.ENTER:
            raise ValueError(f"enter() got a {decision.action.value} decision for {decision.symbol}")
        with self.lock:
            return self._enter(decision, cycle_time, decision_id, price_hint)

    def _enter(
        self, decision: Decision, cycle_time: datetime, decision_id: int | None, price_hint: Decimal | None
    ) -> EntryOutcome:
        symbol = decision.symbol
        tier = decision.tier.value if decision.tier else None
        cid = client_order_id(symbol, cycle_time, OrderSide.BUY)
        try:
            # The held qty before the buy, so the qty received (net of the fee in coin) is a broker fact.
            before = self.broker.get_position(symbol)
        except BrokerUnavailable as exc:
            log.warning("order.deferred", symbol=symbol, purpose="entry", error=str(exc))
            return EntryOutcome(symbol, "unavailable", reason=str(exc))
        record, created = self.journal.record_order_intent(
            client_order_id=cid,
            symbol=symbol,
            side=OrderSide.BUY,
            type=OrderType.MARKET,
            purpose="entry",
            notional=decision.notional,
            decision_id=decision_id,
            now=self.clock(),
        )
        try:
            if not created:
                existing = self._resolve_existing_intent(record)
                if existing is not None:
                    return self._entry_from_result(record, existing, before_qty=None, tier=tier)
                if record.status not in ("intent", ORDER_UNKNOWN):
                    return EntryOutcome(symbol, record.status, reason="already handled in this cycle")
            result = self.desk.submit(
                cid, "entry", symbol, lambda: self.broker.buy_notional(symbol, decision.notional, cid, price_hint)
            )
        except OrderSkipped as exc:
            return EntryOutcome(symbol, "skipped", reason=exc.reason)
        except OrderRejected as exc:
            return EntryOutcome(symbol, "rejected", reason=str(exc))
        except BrokerUnavailable as exc:
            return EntryOutcome(symbol, "unknown", reason=str(exc))
        result = self.desk.await_fill(result)
        refreshed = self.journal.get_order(cid)
        assert refreshed is not None
        return self._entry_from_result(refreshed, result, before_qty=before.qty if before else ZERO, tier=tier)

    def _resolve_existing_intent(self, record: OrderRecord) -> OrderResult | None:
        """An intent from an earlier run of this cycle: the broker's view by client_order_id, if any."""
        return self.desk.lookup(record.client_order_id)

    def _entry_from_result(
        self, record: OrderRecord, result: OrderResult, *, before_qty: Decimal | None, tier: str | None = None
    ) -> EntryOutcome:
        symbol = record.symbol
        existing = self.journal.position_by_entry_order(record.client_order_id)
        if existing is not None:
            return EntryOutcome(symbol, "exists", position=existing, order=result)
        if result.filled_qty <= 0:
            status = "pending" if result.is_open else result.status.value
            log.info(
                "order.not_filled",
                symbol=symbol,
                client_order_id=record.client_order_id,
                status=result.raw_status or result.status.value,
            )
            return EntryOutcome(symbol, status, order=result)
        position = self.open_from_fill(record, result, before_qty=before_qty, tier=tier)
        return EntryOutcome(symbol, "opened" if position else "error", position=position, order=result)

    def open_from_fill(
        self, record: OrderRecord, result: OrderResult, *, before_qty: Decimal | None, tier: str | None = None
    ) -> PositionRecord | None:
        """Open the journal position for a (partly) filled entry order; the held qty comes from the broker."""
        symbol = record.symbol
        log.info(
            "order.filled",
            symbol=symbol,
            client_order_id=record.client_order_id,
            order_id=result.order_id,
            side="buy",
            filled_qty=result.filled_qty,
            filled_avg_price=result.filled_avg_price,
            status=result.status.value,
        )
        price = result.filled_avg_price or ZERO
        if result.fee is not None and result.fee_asset and result.fee_asset != "USD":
            qty = result.filled_qty - result.fee
        else:
            qty = result.filled_qty * (1 - self._fee_rate())  # estimate, replaced by the broker's qty below
            try:
                after = self.broker.get_position(symbol)
                if after is not None and before_qty is not None:
                    delta = after.qty - before_qty
                    if 0 < delta <= result.filled_qty:
                        qty = delta
                elif after is not None and after.qty > 0:
                    # Recovered later (restart, reconciliation): no "before"; the broker's qty, at most the fill.
                    qty = min(after.qty, result.filled_qty)
            except BrokerUnavailable as exc:
                log.warning("position.qty_estimated", symbol=symbol, error=str(exc))
        fee = result.filled_qty - qty
        self.journal.set_order_fee(record.client_order_id, fee, symbol.split("/")[0])
        entry_time = result.filled_at or self.clock()
        stop = initial_state(price, entry_time, self.settings.exits)
        try:
            position = self.journal.open_position(
                symbol=symbol,
                entry_time=entry_time,
                entry_price=price,
                entry_filled_qty=result.filled_qty,
                entry_cost=result.filled_qty * price,
                qty=qty,
                stop=stop,
                tier=tier or self._tier_of(record),
                entry_fee=fee,
                entry_client_order_id=record.client_order_id,
                decision_id=record.decision_id,
            )
        except Exception as exc:  # the unique open-position index: never two positions in one symbol
            log.error("position.open_failed", symbol=symbol, client_order_id=record.client_order_id, error=str(exc))
            return None
        log.info(
            "position.opened",
            symbol=symbol,
            position_id=position.id,
            tier=position.tier,
            qty=position.qty,
            filled_qty=result.filled_qty,
            fee_qty=fee,
            entry_price=price,
            cost=position.entry_cost,
            stop=position.stop_price,
            client_order_id=record.client_order_id,
        )
        return self.sync_backstop(position)

    def _tier_of(self, record: OrderRecord) -> str | None:
        if record.decision_id is None:
            return None
        for row in self.journal.recent_decisions(symbol=record.symbol, limit=50):
            if row["id"] == record.decision_id:
                return row["tier"]
        return None

    # ----- backstop -----

    def sync_backstop(self, position: PositionRecord, live: Sequence[OrderResult] | None = None) -> PositionRecord:
        """Place the broker-side stop_limit at the current stop, or move it up when the stop rose enough
        (see `backstops.Backstops.sync`; `live` = this tick's open orders at the broker)."""
        with self.lock:
            return self.backstops.sync(position, live)

    def settle_entry(
        self, position: PositionRecord, *, cancel_open: bool = False, result: OrderResult | None = None
    ) -> PositionRecord:
        """Follow up a partially filled entry order: record further fills (the position grows) and, before an
        exit, cancel its unfilled rest so nothing is bought after the position is closed.

        `result` is the entry order as just read from the broker (reconciliation has it already)."""
        cid = position.entry_client_order_id
        if cid is None:
            return position
        if result is None:
            record = self.journal.get_order(cid)
            if record is None or not record.is_pending:
                return position
            result = self.broker.get_order_by_client_id(cid)
            if result is None:
                return position
        if cancel_open and result.is_open:
            result = self.broker.cancel_order(result.order_id)
        self.desk.record(cid, result)
        if result.filled_qty > position.entry_filled_qty and position.entry_filled_qty > 0:
            net_ratio = position.qty / position.entry_filled_qty  # what the fee in coin left of each unit
            grown = position.qty + round_down(
                (result.filled_qty - position.entry_filled_qty) * net_ratio, QTY_STEP_DEFAULT
            )
            price = result.filled_avg_price or position.entry_price
            self.journal.update_entry_fill(
                position.id,
                entry_price=price,
                entry_filled_qty=result.filled_qty,
                entry_cost=result.filled_qty * price,
                qty=grown,
            )
            log.info(
                "position.entry_filled_more",
                symbol=position.symbol,
                position_id=position.id,
                filled_qty=result.filled_qty,
                qty=grown,
                status=result.status.value,
            )
            refreshed = self.journal.get_position(position.id)
            if position.backstop_order_id and not cancel_open:  # re-placed for the whole qty on the next sync
                cleared = self.backstops.clear(refreshed)
                if any(order.filled_qty > 0 for order in cleared.finals):  # it fired meanwhile: the broker wins
                    return self._close(self.journal.get_position(position.id), ExitReason.BACKSTOP, self.clock())
                refreshed = self.journal.get_position(position.id)
            return refreshed
        return position

    # ----- exits -----

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
            position = self.settle_entry(position, cancel_open=True)
            if not position.is_open:
                return position
            cleared = self.backstops.clear(position, live)
            if not cleared.confirmed:
                log.warning("exit.deferred", symbol=position.symbol, position_id=position.id, reason=reason.value,
                            error="the backstop's cancel is not confirmed yet; selling now would hit its coins")
                return None
            for pending in self._pending_exit_orders(position):
                if pending.is_open:
                    log.info("exit.pending", symbol=position.symbol, client_order_id=pending.client_order_id)
                    return None
            broker_position = self.broker.get_position(position.symbol)
        except BrokerUnavailable as exc:
            log.warning(
                "exit.deferred", symbol=position.symbol, position_id=position.id, reason=reason.value, error=str(exc)
            )
            return None
        if cleared.filled:
            return self._close(position, ExitReason.BACKSTOP, now)
        if broker_position is None or broker_position.qty <= 0:
            if self.journal.sell_fills(position.id):
                return self._close(position, self._reason_of_fills(position, reason), now)
            return self.close_vanished(position, now=now, price=price)
        held = self._free_qty(position, broker_position)
        if held <= 0:
            # The coins are there but open orders hold them (one of ours the journal does not know).
            try:
                held = self._free_coins(position)
            except BrokerUnavailable as exc:
                log.warning("exit.deferred", symbol=position.symbol, position_id=position.id, reason=reason.value,
                            error=str(exc))
                return None
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
                    return self._close_dust(position, price, now)
                return None
            except OrderRejected as exc:
                if exc.status_code == 403 and not freed:
                    # Insufficient balance: something of ours still holds the coins. Free them once, then retry.
                    freed = True
                    try:
                        held = self._free_coins(position)
                    except BrokerUnavailable as unavailable:
                        log.warning("exit.deferred", symbol=position.symbol, position_id=position.id,
                                    reason=reason.value, error=str(unavailable))
                        return None
                    if held > 0:
                        continue
                    if self.journal.sell_fills(position.id):
                        return True
                    return self.close_vanished(position, now=now, price=price)
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
                log.info("exit.stale_sell_canceled", symbol=position.symbol, client_order_id=order.client_order_id,
                         status=final.status.value, filled_qty=final.filled_qty)
        log.info("exit.coins_freed", symbol=position.symbol, position_id=position.id, orders=len(orders))
        return self._free_qty(position, self.broker.get_position(position.symbol))

    def _note_blocked(self, position: PositionRecord, reason: ExitReason, error: str) -> None:
        if position.id in self._blocked:
            log.debug("exit.blocked", symbol=position.symbol, position_id=position.id, error=error)
            return
        self._blocked.add(position.id)
        log.warning("exit.blocked", symbol=position.symbol, position_id=position.id, reason=reason.value, error=error,
                    effect="the exit is tried again on the next tick")

    def _seller(self, symbol: str, qty: Decimal, cid: str) -> Callable[[], OrderResult]:
        return lambda: self.broker.sell_qty(symbol, qty, cid)

    def _free_qty(self, position: PositionRecord, broker_position: BrokerPosition | None) -> Decimal:
        """What may be sold now: the broker's free quantity (not held by open orders), at most the journal's."""
        if broker_position is None:
            return ZERO
        free = broker_position.qty if broker_position.qty_available is None else broker_position.qty_available
        return max(ZERO, min(free, broker_position.qty, position.qty))

    def _pending_exit_orders(self, position: PositionRecord) -> list[OrderResult]:
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

    def _reason_of_fills(self, position: PositionRecord, fallback: ExitReason) -> ExitReason:
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

    def _close(self, position: PositionRecord, reason: ExitReason, now: datetime) -> PositionRecord:
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
        self._blocked.discard(position.id)
        self._log_closed(closed, estimated)
        return closed

    def _exit_fee_rate(self, position: PositionRecord) -> Decimal:
        """Alpaca's order endpoint does not report fees: assume the rate observed on the entry fill."""
        if position.entry_filled_qty > 0 and position.entry_fee > 0:
            return position.entry_fee / position.entry_filled_qty
        return self._fee_rate()

    def _close_dust(self, position: PositionRecord, price: Decimal | None, now: datetime) -> PositionRecord:
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
                self._pending_exit_orders(position)
            except BrokerUnavailable:
                return None
            if self.journal.sell_fills(position.id):
                return self._close(position, self._reason_of_fills(position, ExitReason.EXTERNAL), now)
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
