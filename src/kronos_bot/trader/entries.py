"""Entries: an ENTER decision becomes a market buy by notional and, once filled, a journal position.

Intent first (the row with its deterministic client_order_id is on disk before the buy is sent), never
twice (a re-run of the same cycle slot finds its intent and asks the broker instead of buying again), and
fees in the coin (the held quantity is the broker's position before/after the buy, not the filled qty).
A fill opens the position with its initial stop and places its backstop at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from kronos_bot.broker.base import (
    QTY_STEP_DEFAULT,
    ZERO,
    BrokerUnavailable,
    OrderRejected,
    OrderResult,
    OrderSide,
    OrderSkipped,
    OrderType,
    client_order_id,
    round_down,
)
from kronos_bot.config import Settings
from kronos_bot.domain import Action, Decision
from kronos_bot.logs import get_logger
from kronos_bot.trader.backstops import Backstops
from kronos_bot.trader.closing import Closer
from kronos_bot.trader.engine import RiskState
from kronos_bot.trader.orders import DeskUser, OrderDesk, fee_rate
from kronos_bot.trader.records import ORDER_UNKNOWN, OrderRecord, PositionRecord
from kronos_bot.trader.stops import ExitReason, initial_state

log = get_logger("kronos_bot.trader.execution")


@dataclass(frozen=True)
class EntryOutcome:
    """What became of one ENTER decision: a position, or a status (`skipped`, `rejected`, `pending`...)."""

    symbol: str
    status: str
    position: PositionRecord | None = None
    order: OrderResult | None = None
    reason: str = ""


class Entries(DeskUser):
    """Buys for the engine's ENTER decisions and opens (or grows) their journal positions."""

    def __init__(
        self, desk: OrderDesk, backstops: Backstops, closer: Closer, settings: Settings, lock: threading.RLock
    ) -> None:
        super().__init__(desk, settings, lock)
        self.backstops = backstops
        self.closer = closer

    def _fee_rate(self) -> Decimal:
        return fee_rate(self.settings.broker.sim.fee_percent)

    def risk_state(self, now: datetime) -> RiskState:
        """The engine's RiskState from the journal and the broker's account (one account request).

        Symbols with an entry order still pending at the broker count as open, so a slow fill is never
        followed by a second entry in the next cycle; so do symbols with a filled entry whose position is
        not journaled yet (a crash between the two, until reconciliation opens it). Raises
        BrokerUnavailable when the account cannot be read.
        """
        open_symbols = {p.symbol for p in self.journal.open_positions()}
        open_symbols |= {o.symbol for o in self.journal.pending_orders() if o.purpose == "entry"}
        open_symbols |= {o.symbol for o in self.journal.filled_entries_without_position()}
        account = self.broker.get_account()
        self.desk.events.account_seen(account, now)
        return RiskState(
            open_symbols=frozenset(open_symbols),
            account=account,
            last_exit_at=self.journal.last_exit_times(),
            daily_realized_pnl=self.journal.realized_pnl_for_day(now),
        )

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
        self.desk.events.position_opened(position)
        return self.backstops.sync(position)

    def _tier_of(self, record: OrderRecord) -> str | None:
        if record.decision_id is None:
            return None
        for row in self.journal.recent_decisions(symbol=record.symbol, limit=50):
            if row["id"] == record.decision_id:
                return row["tier"]
        return None

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
                    return self.closer.close(self.journal.get_position(position.id), ExitReason.BACKSTOP, self.clock())
                refreshed = self.journal.get_position(position.id)
            return refreshed
        return position
