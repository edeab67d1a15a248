"""Order flow between the engine's decisions, the broker and the journal: entries, exits, backstops.

The rules that make it safe, in one place:
  * Intent first: every order is written to the journal (status `intent`) before its request goes out,
    with a deterministic client_order_id; a crash anywhere leaves a row that reconciliation resolves by
    asking the broker for that client_order_id.
  * Never twice: a re-run of the same cycle finds the intent and resolves it instead of resubmitting.
  * Fees in the coin: the held quantity comes from the broker's position (before/after the buy), never
    from filled qty; exits sell min(broker qty, journal qty), so the bot never sells coins it did not buy.
  * Backstop: a GTC stop_limit sell at the current stop, moved up in steps; it is cancelled before a
    market exit, and if it filled meanwhile the broker's state wins (exit reason `backstop`).
Everything here is I/O at the edge; the decisions themselves come from `engine` and `exits`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from kronos_bot.broker.base import (
    QTY_STEP_DEFAULT,
    ZERO,
    Broker,
    BrokerPosition,
    BrokerUnavailable,
    OrderNotFound,
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
from kronos_bot.engine import RiskState
from kronos_bot.exits import ExitReason, backstop_needs_replace, backstop_prices, initial_state
from kronos_bot.journal import ORDER_SKIPPED, ORDER_UNKNOWN, Journal, OrderRecord, PositionRecord
from kronos_bot.logs import get_logger

HUNDRED = Decimal(100)
# Poll interval while waiting (up to broker.fill_timeout_seconds) for a market order to fill.
FILL_POLL_SECONDS = 0.5
# A partially filled exit whose remainder was cancelled is topped up at most this many times.
MAX_EXIT_ORDERS = 3

log = get_logger("kronos_bot.execution")


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
        self.sleep = sleep
        # None: the config's broker.fill_timeout_seconds.
        self.fill_timeout_seconds = (
            settings.broker.fill_timeout_seconds if fill_timeout_seconds is None else fill_timeout_seconds
        )
        self.fill_poll_seconds = fill_poll_seconds
        # One trading action at a time: the entry cycle, the exit monitor and reconciliation run in different
        # scheduler threads and must not, e.g., close as `external` a position the monitor is selling.
        self.lock = threading.RLock()

    # ----- shared helpers -----

    def _await_fill(self, result: OrderResult) -> OrderResult:
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
        return result

    def _record(self, cid: str, result: OrderResult) -> None:
        self.journal.update_order(cid, result, now=self.clock())

    def _fee_rate(self) -> Decimal:
        return Decimal(str(self.settings.broker.sim.fee_percent)) / HUNDRED

    def _submit(self, cid: str, purpose: str, symbol: str, send: Callable[[], OrderResult]) -> OrderResult | None:
        """Send a journaled intent; turn every failure into a journal state + one log line (never a retry storm)."""
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
        self._record(cid, result)
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
            result = self._submit(
                cid, "entry", symbol, lambda: self.broker.buy_notional(symbol, decision.notional, cid, price_hint)
            )
        except OrderSkipped as exc:
            return EntryOutcome(symbol, "skipped", reason=exc.reason)
        except OrderRejected as exc:
            return EntryOutcome(symbol, "rejected", reason=str(exc))
        except BrokerUnavailable as exc:
            return EntryOutcome(symbol, "unknown", reason=str(exc))
        assert result is not None
        result = self._await_fill(result)
        self._record(cid, result)
        refreshed = self.journal.get_order(cid)
        assert refreshed is not None
        return self._entry_from_result(refreshed, result, before_qty=before.qty if before else ZERO, tier=tier)

    def _resolve_existing_intent(self, record: OrderRecord) -> OrderResult | None:
        """An intent from an earlier run of this cycle: the broker's view by client_order_id, if any."""
        found = self.broker.get_order_by_client_id(record.client_order_id)
        if found is not None:
            self._record(record.client_order_id, found)
        return found

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

    def sync_backstop(self, position: PositionRecord) -> PositionRecord:
        """Place the broker-side stop_limit at the current stop, or move it up when the stop rose enough."""
        cfg = self.settings.exits.backstop
        if not cfg.enabled or position.stop_price is None or not position.is_open:
            return position
        if position.backstop_order_id is None:
            return self._place_backstop(position)
        if backstop_needs_replace(position.backstop_stop, position.stop_price, cfg.replace_step_percent):
            return self._replace_backstop(position)
        return position

    def _backstop_intent(self, position: PositionRecord) -> tuple[int, str, Decimal, Decimal, bool]:
        """Journal the next backstop order (sequence, client id, stop and limit) before it is sent."""
        assert position.stop_price is not None
        seq = position.backstop_seq + 1
        cid = client_order_id(position.symbol, position.entry_time, "stop", seq)
        stop, limit = backstop_prices(position.stop_price, self.settings.exits.backstop.limit_offset_percent)
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
            now=self.clock(),
        )
        return seq, cid, stop, limit, created

    def _place_backstop(self, position: PositionRecord) -> PositionRecord:
        assert position.stop_price is not None
        seq, cid, stop, limit, created = self._backstop_intent(position)
        try:
            existing = None if created else self.broker.get_order_by_client_id(cid)
            result = existing or self._submit(
                cid,
                "backstop",
                position.symbol,
                lambda: self.broker.place_stop_limit_sell(position.symbol, position.qty, stop, limit, cid),
            )
        except (OrderSkipped, OrderRejected, BrokerUnavailable):
            self.journal.set_backstop(position.id, order_id=None, client_order_id=None, stop=None, seq=seq)
            return self.journal.get_position(position.id)
        assert result is not None
        self._record(cid, result)
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

    def _replace_backstop(self, position: PositionRecord) -> PositionRecord:
        assert position.stop_price is not None and position.backstop_order_id is not None
        seq, cid, stop, limit, _ = self._backstop_intent(position)
        old_id = position.backstop_order_id
        try:
            result = self._submit(
                cid, "backstop", position.symbol, lambda: self.broker.replace_stop_limit(old_id, stop, limit, cid)
            )
        except OrderRejected:
            # Not replaceable: usually it triggered or filled. Look at it; a fill is handled by the monitor.
            self._refresh_backstop(position)
            return self.journal.get_position(position.id)
        except (OrderSkipped, BrokerUnavailable):
            return position
        assert result is not None
        if position.backstop_client_order_id:
            try:
                self._record(position.backstop_client_order_id, self.broker.get_order(old_id))
            except (BrokerUnavailable, OrderNotFound):
                pass
        self.journal.set_backstop(position.id, order_id=result.order_id, client_order_id=cid, stop=stop, seq=seq)
        log.info(
            "backstop.replaced",
            symbol=position.symbol,
            position_id=position.id,
            stop=stop,
            limit=limit,
            previous_stop=position.backstop_stop,
            order_id=result.order_id,
        )
        return self.journal.get_position(position.id)

    def _refresh_backstop(self, position: PositionRecord) -> OrderResult | None:
        if not position.backstop_order_id:
            return None
        try:
            order = self.broker.get_order(position.backstop_order_id)
        except OrderNotFound:
            return None
        if position.backstop_client_order_id:
            self._record(position.backstop_client_order_id, order)
        return order

    def _cancel_backstop(self, position: PositionRecord) -> OrderResult | None:
        """Cancel the backstop before a market exit; returns its final state (maybe FILLED: the broker wins)."""
        if not position.backstop_order_id:
            return None
        try:
            final = self.broker.cancel_order(position.backstop_order_id)
        except OrderNotFound:
            final = None
        if final is not None and position.backstop_client_order_id:
            self._record(position.backstop_client_order_id, final)
        self.journal.set_backstop(
            position.id, order_id=None, client_order_id=None, stop=None, seq=position.backstop_seq
        )
        log.info(
            "backstop.canceled",
            symbol=position.symbol,
            position_id=position.id,
            status=final.status.value if final else "not_found",
            filled_qty=final.filled_qty if final else None,
        )
        return final

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
        self._record(cid, result)
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
                final = self._cancel_backstop(refreshed)
                if final is not None and final.filled_qty > 0:  # it fired meanwhile: the broker wins
                    return self._close(
                        self.journal.get_position(position.id), [final], ExitReason.BACKSTOP, self.clock()
                    )
                refreshed = self.journal.get_position(position.id)
            return refreshed
        return position

    # ----- exits -----

    def exit(
        self, position: PositionRecord, reason: ExitReason, *, price: Decimal | None = None, now: datetime | None = None
    ) -> PositionRecord | None:
        """Close a position: cancel the backstop, sell the held qty, record P&L. None = not closed (yet)."""
        now = now or self.clock()
        fills: list[OrderResult] = []
        try:
            position = self.settle_entry(position, cancel_open=True)
            backstop = self._cancel_backstop(position)
            if backstop is not None and backstop.filled_qty > 0:
                fills.append(backstop)
            for pending in self._pending_exit_orders(position):
                if pending.is_open:
                    log.info("exit.pending", symbol=position.symbol, client_order_id=pending.client_order_id)
                    return None
                if pending.filled_qty > 0:
                    fills.append(pending)
            broker_position = self.broker.get_position(position.symbol)
        except BrokerUnavailable as exc:
            log.warning(
                "exit.deferred", symbol=position.symbol, position_id=position.id, reason=reason.value, error=str(exc)
            )
            return None
        held = self._held_qty(position, broker_position)
        if backstop is not None and backstop.status is OrderStatus.FILLED:
            return self._close(position, fills, ExitReason.BACKSTOP, now)
        if held <= 0:
            if fills:
                return self._close(
                    position, fills, ExitReason.BACKSTOP if backstop and backstop.filled_qty else reason, now
                )
            return self.close_vanished(position, now=now, price=price)
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
                now=self.clock(),
            )
            try:
                existing = None if created else self.broker.get_order_by_client_id(cid)
                result = existing or self._submit(
                    cid, "exit", position.symbol, self._seller(position.symbol, held, cid)
                )
            except OrderSkipped as exc:
                if fills:
                    return self._close(position, fills, reason, now)
                if exc.reason in ("below_min_order_size", "zero_qty"):
                    return self._close_dust(position, price, now)
                return None
            except (OrderRejected, BrokerUnavailable):
                return None
            assert result is not None
            result = self._await_fill(result)
            self._record(cid, result)
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
            if result.filled_qty > 0:
                fills.append(result)
            held -= result.filled_qty
            if held <= 0 or result.status is OrderStatus.FILLED:
                break
        if not fills:
            return None
        return self._close(position, fills, reason, now)

    def _seller(self, symbol: str, qty: Decimal, cid: str) -> Callable[[], OrderResult]:
        return lambda: self.broker.sell_qty(symbol, qty, cid)

    def _held_qty(self, position: PositionRecord, broker_position: BrokerPosition | None) -> Decimal:
        if broker_position is None:
            return ZERO
        return min(broker_position.qty, position.qty)

    def _pending_exit_orders(self, position: PositionRecord) -> list[OrderResult]:
        """Exit orders of earlier ticks that were not final then, refreshed from the broker."""
        out = []
        for record in self.journal.orders(position_id=position.id):
            if record.purpose != "exit" or not record.is_pending:
                continue
            found = self.broker.get_order_by_client_id(record.client_order_id)
            if found is None:
                self.journal.mark_order(record.client_order_id, OrderStatus.CANCELED.value, "not found at broker")
                continue
            self._record(record.client_order_id, found)
            out.append(found)
        return out

    def _close(
        self, position: PositionRecord, fills: list[OrderResult], reason: ExitReason, now: datetime
    ) -> PositionRecord:
        qty = sum((f.filled_qty for f in fills), ZERO)
        gross = sum((f.filled_notional for f in fills), ZERO)
        fee = ZERO
        estimated = False
        for f in fills:
            if f.fee is not None and f.fee_asset == "USD":
                fee += f.fee
            else:
                fee += f.filled_notional * self._exit_fee_rate(position)
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
        """The broker holds nothing for a journal position: the backstop filled (reason `backstop`) or
        someone closed it outside the bot (`external`, valued at the last known price)."""
        now = now or self.clock()
        try:
            backstop = self._refresh_backstop(position)
        except BrokerUnavailable:
            return None
        if backstop is not None and backstop.filled_qty > 0:
            return self._close(position, [backstop], ExitReason.BACKSTOP, now)
        if backstop is not None and backstop.is_open:
            try:
                self.broker.cancel_order(backstop.order_id)
            except (BrokerUnavailable, OrderNotFound):
                pass
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
