"""The simulated broker: dry-run trading (the default without API keys) and the backtest's broker.

It implements the same `Broker` protocol as Alpaca, so the daemon runs the identical code path with or
without real orders. It fills market orders immediately at the latest price with adverse slippage and
charges the fee the way Alpaca charges crypto fees -- in the asset received:
    buy:  qty received = filled qty x (1 - fee)      (filled qty = notional / fill price)
    sell: USD received = qty x fill price x (1 - fee)
so the position holds less than was filled and exits must sell the held quantity, exactly as live.

State (cash, positions, orders) lives in the journal's file (`sim_store`), so a dry run survives restarts.
The price source and the clock are injected: the daemon passes the latest-trade lookup and the wall
clock, a backtest passes the replayed bar's price and time. Stop_limit sells (the backstop) rest until
`on_price` / `on_bar` says the market crossed them; like Alpaca, an open sell order holds its quantity
(a market sell of more than the un-held quantity is rejected), which is why the exit path cancels the
backstop first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from kronos_bot.broker.base import (
    QTY_STEP_DEFAULT,
    ZERO,
    Account,
    AssetInfo,
    BrokerPosition,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    check_buy_notional,
    check_sell_qty,
    round_down,
)
from kronos_bot.broker.sim_store import SimStore
from kronos_bot.config import SimBrokerSettings
from kronos_bot.logs import get_logger
from kronos_bot.trader.journal import Journal

PriceSource = Callable[[str], Decimal | None]
Clock = Callable[[], datetime]
BPS = Decimal(10_000)
HUNDRED = Decimal(100)

log = get_logger("kronos_bot.broker.sim")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SimBroker:
    """Dry-run / backtest broker. See the module docstring for the fill and fee model."""

    name = "sim"

    def __init__(
        self,
        journal: Journal,
        settings: SimBrokerSettings,
        price_source: PriceSource,
        *,
        clock: Clock = _utcnow,
        assets: Mapping[str, AssetInfo] | None = None,
        min_notional: Decimal = ZERO,
    ) -> None:
        self.journal = journal
        self.store = SimStore(journal)
        self.settings = settings
        self.price_source = price_source
        self.clock = clock
        self.assets = dict(assets or {})
        self.min_notional = min_notional
        self.fee_rate = Decimal(str(settings.fee_percent)) / HUNDRED
        self.slippage = Decimal(str(settings.slippage_bps)) / BPS
        self.starting_cash = Decimal(str(settings.starting_cash))

    # ----- reads -----

    def _price(self, symbol: str) -> Decimal:
        price = self.price_source(symbol)
        if price is None or price <= 0:
            raise BrokerUnavailable(f"sim: no price for {symbol}")
        return Decimal(price)

    def get_account(self) -> Account:
        cash = self.store.cash(self.starting_cash)
        equity = cash
        for symbol, (qty, avg) in self.store.positions().items():
            price = self.price_source(symbol)
            equity += qty * (Decimal(price) if price else avg)
        return Account(cash=cash, buying_power=cash, equity=equity)

    def get_asset(self, symbol: str) -> AssetInfo:
        return self.assets.get(symbol) or AssetInfo(symbol=symbol)

    def _held(self, symbol: str) -> Decimal:
        """Quantity reserved by open sell orders (Alpaca's qty minus qty_available)."""
        held = ZERO
        for order, _ in self.store.open_orders(symbol):
            if order.side is OrderSide.SELL:
                held += (order.qty or ZERO) - order.filled_qty
        return held

    def _position(self, symbol: str, qty: Decimal, avg: Decimal) -> BrokerPosition:
        price = self.price_source(symbol)
        return BrokerPosition(
            symbol=symbol,
            qty=qty,
            avg_entry_price=avg,
            market_value=qty * Decimal(price) if price else None,
            qty_available=qty - self._held(symbol),
        )

    def get_positions(self) -> list[BrokerPosition]:
        return [self._position(symbol, qty, avg) for symbol, (qty, avg) in self.store.positions().items()]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        # Only this symbol's open orders are read (the exit monitor asks once per position per tick).
        held = self.store.positions().get(symbol)
        return self._position(symbol, *held) if held is not None else None

    def get_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        return [order for order, _ in self.store.open_orders(symbol)]

    def get_order(self, order_id: str) -> OrderResult:
        found = self.store.get_order(order_id)
        if found is None:
            raise OrderNotFound(order_id)
        return found[0]

    def get_order_by_client_id(self, client_order_id: str) -> OrderResult | None:
        found = self.store.get_order_by_client_id(client_order_id)
        return found[0] if found else None

    # ----- orders -----

    def _new_order(self, **kwargs: object) -> OrderResult:
        now = self.clock()
        base: dict[str, object] = {"order_id": str(uuid.uuid4()), "submitted_at": now, "raw_status": "new"}
        base.update(kwargs)
        return OrderResult(**base)  # type: ignore[arg-type]

    def buy_notional(
        self, symbol: str, notional: Decimal, client_order_id: str, price_hint: Decimal | None = None
    ) -> OrderResult:
        with self.journal.transaction():
            existing = self.get_order_by_client_id(client_order_id)
            if existing is not None:
                return existing  # idempotent, like our Alpaca adapter after a duplicate client_order_id
            market = self._price(symbol)
            notional = check_buy_notional(notional, self.get_asset(symbol), market, self.min_notional)
            cash = self.store.cash(self.starting_cash)
            if notional > cash:
                raise OrderRejected(
                    f"insufficient balance for USD (requested: {notional}, available: {cash})", status_code=403
                )
            price = market * (1 + self.slippage)
            filled = round_down(notional / price, QTY_STEP_DEFAULT)
            received = round_down(filled * (1 - self.fee_rate), QTY_STEP_DEFAULT)
            fee = filled - received
            now = self.clock()
            order = self._new_order(
                client_order_id=client_order_id,
                symbol=symbol,
                side=OrderSide.BUY,
                type=OrderType.MARKET,
                status=OrderStatus.FILLED,
                raw_status="filled",
                notional=notional,
                filled_qty=filled,
                filled_avg_price=price,
                fee=fee,
                fee_asset=symbol.split("/")[0],
                filled_at=now,
            )
            positions = self.store.positions()
            old_qty, old_avg = positions.get(symbol, (ZERO, ZERO))
            new_qty = old_qty + received
            avg = (old_qty * old_avg + received * price) / new_qty if new_qty else price
            self.store.set_position(symbol, new_qty, avg)
            self.store.set_cash(cash - notional)
            self.store.save_order(order)
        log.debug("sim.filled", symbol=symbol, side="buy", qty=str(filled), price=str(price), fee=str(fee))
        return order

    def sell_qty(self, symbol: str, qty: Decimal, client_order_id: str) -> OrderResult:
        with self.journal.transaction():
            existing = self.get_order_by_client_id(client_order_id)
            if existing is not None:
                return existing
            market = self._price(symbol)
            qty = check_sell_qty(qty, self.get_asset(symbol), market, ZERO)
            self._check_available(symbol, qty)
            price = market * (1 - self.slippage)
            order = self._new_order(
                client_order_id=client_order_id,
                symbol=symbol,
                side=OrderSide.SELL,
                type=OrderType.MARKET,
                status=OrderStatus.OPEN,
                qty=qty,
            )
            order = self._fill_sell(order, qty, price)
        return order

    def _check_available(self, symbol: str, qty: Decimal) -> None:
        held_qty, _ = self.store.positions().get(symbol, (ZERO, ZERO))
        available = held_qty - self._held(symbol)
        if qty > available:
            raise OrderRejected(
                f"insufficient balance for {symbol.split('/')[0]} (requested: {qty}, available: {available})",
                status_code=403,
            )

    def _fill_sell(self, order: OrderResult, qty: Decimal, price: Decimal) -> OrderResult:
        """Fill (the rest of) a sell: cash += qty x price x (1 - fee); position shrinks."""
        gross = qty * price
        fee = gross * self.fee_rate
        cash = self.store.cash(self.starting_cash)
        self.store.set_cash(cash + gross - fee)
        held_qty, avg = self.store.positions().get(order.symbol, (ZERO, ZERO))
        self.store.set_position(order.symbol, held_qty - qty, avg)
        filled = order.filled_qty + qty
        prev_value = order.filled_qty * (order.filled_avg_price or ZERO)
        done = replace(
            order,
            status=OrderStatus.FILLED,
            raw_status="filled",
            filled_qty=filled,
            filled_avg_price=(prev_value + gross) / filled,
            fee=(order.fee or ZERO) + fee,
            fee_asset="USD",
            filled_at=self.clock(),
        )
        self.store.save_order(done, triggered=True)
        log.debug("sim.filled", symbol=order.symbol, side="sell", qty=str(qty), price=str(price), fee=str(fee))
        return done

    def place_stop_limit_sell(
        self, symbol: str, qty: Decimal, stop_price: Decimal, limit_price: Decimal, client_order_id: str
    ) -> OrderResult:
        with self.journal.transaction():
            existing = self.get_order_by_client_id(client_order_id)
            if existing is not None:
                return existing
            asset = self.get_asset(symbol)
            qty = check_sell_qty(qty, asset, None, ZERO)
            self._check_available(symbol, qty)
            order = self._new_order(
                client_order_id=client_order_id,
                symbol=symbol,
                side=OrderSide.SELL,
                type=OrderType.STOP_LIMIT,
                status=OrderStatus.OPEN,
                qty=qty,
                stop_price=round_down(stop_price, asset.price_increment),
                limit_price=round_down(limit_price, asset.price_increment),
            )
            self.store.save_order(order)
        return order

    def replace_stop_limit(
        self, order_id: str, stop_price: Decimal, limit_price: Decimal, client_order_id: str
    ) -> OrderResult:
        with self.journal.transaction():
            found = self.store.get_order(order_id)
            if found is None:
                raise OrderNotFound(order_id)
            old, triggered = found
            if not old.is_open or triggered:
                raise OrderRejected(f"order {order_id} is {old.status.value}, cannot replace", status_code=422)
            asset = self.get_asset(old.symbol)
            new = self._new_order(
                client_order_id=client_order_id,
                symbol=old.symbol,
                side=old.side,
                type=old.type,
                status=OrderStatus.OPEN,
                qty=old.qty,
                stop_price=round_down(stop_price, asset.price_increment),
                limit_price=round_down(limit_price, asset.price_increment),
            )
            replaced = replace(old, status=OrderStatus.REPLACED, raw_status="replaced", replaced_by=new.order_id)
            self.store.save_order(replaced)
            self.store.save_order(new)
        return new

    def cancel_order(self, order_id: str) -> OrderResult:
        with self.journal.transaction():
            found = self.store.get_order(order_id)
            if found is None:
                raise OrderNotFound(order_id)
            order, triggered = found
            if not order.is_open:
                return order  # filled (or already gone): the broker's state wins
            canceled = replace(order, status=OrderStatus.CANCELED, raw_status="canceled")
            self.store.save_order(canceled, triggered)
        return canceled

    # ----- market events (backstop triggering) -----

    def on_price(self, symbol: str, price: Decimal) -> list[OrderResult]:
        """A trade at `price`: trigger stop_limit sells whose stop it crossed; fill triggered ones >= limit."""
        fills = []
        with self.journal.transaction():
            for order, triggered in self.store.open_orders(symbol):
                if order.type is not OrderType.STOP_LIMIT:
                    continue
                stop, limit = order.stop_price or ZERO, order.limit_price or ZERO
                if not triggered and price <= stop:
                    triggered = True
                    self.store.save_order(order, triggered=True)
                if triggered and price >= limit:
                    fill_price = max(limit, price * (1 - self.slippage))
                    fills.append(self._fill_sell(order, (order.qty or ZERO) - order.filled_qty, fill_price))
        return fills

    def on_bar(self, symbol: str, open_: Decimal, high: Decimal, low: Decimal, close: Decimal) -> list[OrderResult]:
        """Backtests: resolve resting stop_limits against one bar, conservatively.

        Untriggered: triggers when low <= stop, at min(open, stop) (a gap down triggers at the open); it
        fills at once only if that price is still >= limit, else it rests as a limit order. An order
        triggered on an earlier bar fills when the bar's high reaches the limit, at max(open, limit).
        """
        fills = []
        with self.journal.transaction():
            for order, triggered in self.store.open_orders(symbol):
                if order.type is not OrderType.STOP_LIMIT:
                    continue
                stop, limit = order.stop_price or ZERO, order.limit_price or ZERO
                remaining = (order.qty or ZERO) - order.filled_qty
                if not triggered:
                    if low > stop:
                        continue
                    trigger_price = min(open_, stop)
                    if trigger_price >= limit:
                        fills.append(self._fill_sell(order, remaining, max(limit, trigger_price * (1 - self.slippage))))
                    else:
                        self.store.save_order(order, triggered=True)
                elif high >= limit:
                    fills.append(self._fill_sell(order, remaining, max(open_, limit)))
        return fills
