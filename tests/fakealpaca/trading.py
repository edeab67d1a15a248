"""Alpaca trading endpoints on the fake server, in the JSON shapes alpaca-py's models parse.

Routes (alpaca-py builds `url_override + "/v2" + path`):
    GET    /v2/account
    GET    /v2/assets/{symbol}                    min_order_size / min_trade_increment / price_increment
    POST   /v2/orders                             market (notional or qty), stop_limit; GTC/IOC
    GET    /v2/orders                             ?status=open|closed|all&symbols=...&limit=
    GET    /v2/orders:by_client_order_id          ?client_order_id=   (404 when unknown)
    GET    /v2/orders/{id}
    PATCH  /v2/orders/{id}                        replace: a NEW order, the old one becomes `replaced`
    DELETE /v2/orders/{id}                        204; 422 when already filled/canceled; 404 unknown
    GET    /v2/positions, /v2/positions/{symbol}  positions report crypto symbols without "/" (BTCUSD)

Behaviour, as Alpaca's crypto trading behaves:
  * Fills at the price from `state.prices` (or the market fake's latest trade). The fee is taken in the
    coin received: a buy of filled_qty adds filled_qty x (1 - fee) to the position; a sell credits
    qty x price x (1 - fee) USD.
  * The POST response shows `pending_new`; the fill happens right after (`fill_mode="fill"`), so the
    caller sees it on its next GET. `fill_mode="hold"` leaves market orders unfilled (`state.fill(...)`
    fills later), `"partial"` fills `partial_fraction` of them and leaves them `partially_filled`.
  * An open sell (e.g. a stop_limit) holds its quantity: a market sell beyond `qty_available` gets 403
    insufficient balance, as does a buy beyond cash. A duplicate client_order_id gets 422.
  * `state.trigger(symbol, price)` lets stop_limit sells trigger/fill as if the market traded there.
  * `state.accept_then_stall(seconds)`: the next POST/PATCH creates the order, then answers only after
    `seconds` -- "accepted, but the response timed out" for idempotency tests. For a stall on any one
    route (a DELETE, a GET at start-up...) use the server's `Fault.stall_after`.
  * `state.refuse_replace = True`: PATCH answers 422 while the order is still live, as a broker that does
    not replace crypto stop orders would (the bot must then cancel, confirm and place a new one).
  * `state.set_price` also sets the latest quote (bid/ask 0.01 % around the price), the second source the
    bot asks when a latest trade looks suspect; `set_price(..., quote=False)` leaves the quote alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from tests.fakealpaca.server import Request, Response

if TYPE_CHECKING:
    from tests.fakealpaca import FakeAlpaca

D = Decimal
Q9 = D("0.000000001")
OPEN = {"new", "accepted", "pending_new", "partially_filled"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _norm(symbol: str) -> str:
    return symbol.replace("/", "").upper()


def _slash(symbol: str) -> str:
    s = symbol.upper()
    if "/" in s:
        return s
    for quote in ("USDT", "USDC", "USD"):
        if s.endswith(quote):
            return f"{s[: -len(quote)]}/{quote}"
    return s


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


@dataclass
class FakeAsset:
    symbol: str
    min_order_size: str = "0.000000002"
    min_trade_increment: str = "0.000000001"
    price_increment: str = "0.000000001"
    tradable: bool = True
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": "crypto",
            "exchange": "CRYPTO",
            "symbol": self.symbol,
            "name": f"{self.symbol} fake",
            "status": "active",
            "tradable": self.tradable,
            "marginable": False,
            "shortable": False,
            "easy_to_borrow": False,
            "fractionable": True,
            "attributes": [],
            "min_order_size": self.min_order_size,
            "min_trade_increment": self.min_trade_increment,
            "price_increment": self.price_increment,
        }


@dataclass
class FakeOrder:
    symbol: str  # BASE/USD
    side: str
    type: str
    client_order_id: str
    time_in_force: str = "gtc"
    qty: Decimal | None = None
    notional: Decimal | None = None
    stop_price: Decimal | None = None
    limit_price: Decimal | None = None
    status: str = "pending_new"
    filled_qty: Decimal = field(default_factory=lambda: D(0))
    filled_value: Decimal = field(default_factory=lambda: D(0))
    triggered: bool = False
    replaced_by: str | None = None
    replaces: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    filled_at: str | None = None
    canceled_at: str | None = None

    @property
    def avg_price(self) -> Decimal | None:
        return (self.filled_value / self.filled_qty) if self.filled_qty else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "submitted_at": self.created_at,
            "filled_at": self.filled_at,
            "expired_at": None,
            "canceled_at": self.canceled_at,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.symbol)),
            "symbol": self.symbol,
            "asset_class": "crypto",
            "notional": _s(self.notional),
            "qty": _s(self.qty),
            "filled_qty": _s(self.filled_qty) or "0",
            "filled_avg_price": _s(self.avg_price),
            "order_class": "simple",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "time_in_force": self.time_in_force,
            "limit_price": _s(self.limit_price),
            "stop_price": _s(self.stop_price),
            "status": self.status,
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "position_intent": None,
        }


@dataclass
class FakePosition:
    symbol: str  # BASE/USD
    qty: Decimal
    cost: Decimal  # USD paid for the coins still held


class TradingState:
    """The fake account; tests set prices, assets, modes and faults, then inspect orders and positions."""

    def __init__(self, fake: FakeAlpaca) -> None:
        self.fake = fake
        self.lock = threading.RLock()
        self.cash = D("10000")
        self.fee_percent = D("0.25")
        self.prices: dict[str, Decimal] = {}
        self.assets: dict[str, FakeAsset] = {}
        self.orders: dict[str, FakeOrder] = {}
        self.positions: dict[str, FakePosition] = {}
        self.fill_mode = "fill"  # fill | hold | partial
        self.partial_fraction = D("0.5")
        self.account_status = "ACTIVE"
        self.refuse_replace = False
        self._stalls: list[float] = []

    # ----- scenario helpers -----

    def set_price(self, symbol: str, price: float | str | Decimal, *, quote: bool = True) -> None:
        """Set the fill price (also served as the latest trade, and the quote around it, by the market fake)."""
        self.prices[symbol] = D(str(price))
        self.fake.market.set_latest_trade(symbol, float(price))
        if quote:
            self.fake.market.set_latest_quote(symbol, float(price) * 0.9999, float(price) * 1.0001)

    def add_asset(self, symbol: str, **kw: Any) -> FakeAsset:
        asset = FakeAsset(symbol, **{k: str(v) if k != "tradable" else v for k, v in kw.items()})
        self.assets[symbol] = asset
        return asset

    def accept_then_stall(self, seconds: float, times: int = 1) -> None:
        self._stalls.extend([seconds] * times)

    def price(self, symbol: str) -> Decimal:
        if symbol in self.prices:
            return self.prices[symbol]
        trade = self.fake.market.latest_trades.get(symbol)
        if trade is None:
            raise KeyError(f"no price for {symbol} in the fake")
        return D(str(trade["p"]))

    def by_client_id(self, cid: str) -> FakeOrder | None:
        return next((o for o in self.orders.values() if o.client_order_id == cid), None)

    def orders_for(self, symbol: str | None = None, status: str | None = None) -> list[FakeOrder]:
        return [
            o
            for o in self.orders.values()
            if (symbol is None or o.symbol == symbol) and (status is None or o.status == status)
        ]

    def position_qty(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.qty if pos else D(0)

    def held(self, symbol: str) -> Decimal:
        return sum(
            (
                (o.qty or D(0)) - o.filled_qty
                for o in self.orders.values()
                if o.symbol == symbol and o.side == "sell" and o.status in OPEN
            ),
            D(0),
        )

    # ----- fills -----

    def _fee(self) -> Decimal:
        return self.fee_percent / 100

    def fill(self, order_id: str, qty: Decimal | None = None, price: Decimal | None = None) -> FakeOrder:
        """Fill (part of) an open order at `price` (default: the current price)."""
        with self.lock:
            order = self.orders[order_id]
            px = price if price is not None else self.price(order.symbol)
            if order.notional is not None:
                total = (order.notional / px).quantize(Q9, rounding=ROUND_DOWN)
            else:
                total = order.qty or D(0)
            remaining = total - order.filled_qty
            take = remaining if qty is None else min(qty, remaining)
            if take <= 0:
                return order
            if order.side == "buy":
                self.cash -= take * px
                pos = self.positions.setdefault(order.symbol, FakePosition(order.symbol, D(0), D(0)))
                pos.qty += (take * (1 - self._fee())).quantize(Q9, rounding=ROUND_DOWN)
                pos.cost += take * px
            else:
                pos = self.positions[order.symbol]
                before = pos.qty
                pos.qty -= take
                pos.cost = pos.cost * pos.qty / before if before else D(0)
                if pos.qty <= 0:
                    del self.positions[order.symbol]
                self.cash += take * px * (1 - self._fee())
            order.filled_qty += take
            order.filled_value += take * px
            order.status = "filled" if order.filled_qty >= total else "partially_filled"
            order.updated_at = _now()
            if order.status == "filled":
                order.filled_at = order.updated_at
            return order

    def trigger(self, symbol: str, price: float | str | Decimal) -> list[FakeOrder]:
        """The market trades at `price`: stop_limit sells at or above it trigger and fill (>= limit)."""
        px = D(str(price))
        filled = []
        with self.lock:
            for order in list(self.orders.values()):
                if order.symbol != symbol or order.type != "stop_limit" or order.status not in OPEN:
                    continue
                if not order.triggered and px <= (order.stop_price or D(0)):
                    order.triggered = True
                if order.triggered and px >= (order.limit_price or D(0)):
                    filled.append(self.fill(order.id, price=px))
        return filled

    # ----- handlers -----

    def _account(self, _: Request) -> Response:
        with self.lock:
            value = sum((p.qty * self.prices.get(s, D(0)) for s, p in self.positions.items()), D(0))
            cash = _s(self.cash)
            return Response(
                json={
                    "id": "11111111-2222-3333-4444-555555555555",
                    "account_number": "PA0FAKE",
                    "status": self.account_status,
                    "crypto_status": "ACTIVE",
                    "currency": "USD",
                    "buying_power": cash,
                    "regt_buying_power": cash,
                    "non_marginable_buying_power": cash,
                    "cash": cash,
                    "accrued_fees": "0",
                    "portfolio_value": _s(self.cash + value),
                    "equity": _s(self.cash + value),
                    "last_equity": _s(self.cash + value),
                    "long_market_value": _s(value),
                    "short_market_value": "0",
                    "trading_blocked": False,
                    "transfers_blocked": False,
                    "account_blocked": False,
                    "trade_suspended_by_user": False,
                    "multiplier": "1",
                    "shorting_enabled": False,
                    "initial_margin": "0",
                    "maintenance_margin": "0",
                    "sma": "0",
                    "created_at": "2024-01-01T00:00:00Z",
                }
            )

    def _asset(self, request: Request) -> Response:
        symbol = _slash(request.path_params["symbol"])
        asset = self.assets.get(symbol)
        if asset is None:
            if symbol not in self.prices and symbol not in self.fake.market.latest_trades:
                return Response.error(404, f"asset not found for {symbol}", code=40410000)
            asset = self.add_asset(symbol)
        return Response(json=asset.to_json())

    def _submit(self, request: Request) -> Response:
        body = request.json or {}
        stall = 0.0
        with self.lock:
            cid = body.get("client_order_id") or str(uuid.uuid4())
            if self.by_client_id(cid) is not None:
                return Response.error(422, "client_order_id must be unique", code=40010001)
            symbol = _slash(body["symbol"])
            side, type_ = body["side"], body["type"]
            if type_ not in ("market", "stop_limit", "limit"):
                return Response.error(422, f"invalid order type for crypto: {type_}", code=42210000)
            if body.get("time_in_force") not in ("gtc", "ioc"):
                return Response.error(422, "invalid crypto time_in_force", code=42210000)
            qty = D(str(body["qty"])) if body.get("qty") is not None else None
            notional = D(str(body["notional"])) if body.get("notional") is not None else None
            try:
                px = self.price(symbol)
            except KeyError:
                return Response.error(422, f"asset {symbol} is not tradable", code=42210000)
            if side == "buy":
                need = notional if notional is not None else (qty or D(0)) * px
                if need > self.cash:
                    return Response.error(
                        403,
                        f"insufficient balance for USD (requested: {need}, available: {_s(self.cash)})",
                        code=40310000,
                    )
            else:
                available = self.position_qty(symbol) - self.held(symbol)
                if qty is None or qty > available:
                    coin = symbol.split("/")[0]
                    return Response.error(
                        403,
                        f"insufficient balance for {coin} (requested: {qty}, available: {_s(available)})",
                        code=40310000,
                    )
            order = FakeOrder(
                symbol=symbol,
                side=side,
                type=type_,
                client_order_id=cid,
                time_in_force=body["time_in_force"],
                qty=qty,
                notional=notional,
                stop_price=D(str(body["stop_price"])) if body.get("stop_price") is not None else None,
                limit_price=D(str(body["limit_price"])) if body.get("limit_price") is not None else None,
            )
            self.orders[order.id] = order
            snapshot = order.to_json()  # the response shows it accepted, not yet filled
            if type_ == "market":
                if self.fill_mode == "fill":
                    self.fill(order.id)
                elif self.fill_mode == "partial":
                    total = order.qty if order.qty is not None else (notional / px).quantize(Q9, rounding=ROUND_DOWN)  # type: ignore[operator]
                    self.fill(order.id, qty=(total * self.partial_fraction).quantize(Q9, rounding=ROUND_DOWN))
                else:
                    order.status = "new"
            else:
                order.status = "new"
            if self._stalls:
                stall = self._stalls.pop(0)
        if stall:
            time.sleep(stall)  # accepted, but the client has given up waiting by now
        return Response(json=snapshot)

    def _find(self, request: Request) -> FakeOrder | None:
        return self.orders.get(request.path_params["order_id"])

    def _get_order(self, request: Request) -> Response:
        order = self._find(request)
        return Response(json=order.to_json()) if order else Response.error(404, "order not found", code=40410000)

    def _get_by_client_id(self, request: Request) -> Response:
        order = self.by_client_id(request.arg("client_order_id") or "")
        return Response(json=order.to_json()) if order else Response.error(404, "order not found", code=40410000)

    def _list_orders(self, request: Request) -> Response:
        status = request.arg("status", "open")
        symbols = {_slash(s) for s in (request.arg("symbols") or "").split(",") if s}
        limit = int(request.arg("limit", "50") or 50)
        with self.lock:
            out = [
                o
                for o in sorted(self.orders.values(), key=lambda o: o.created_at, reverse=True)
                if (not symbols or o.symbol in symbols)
                and (status == "all" or (status == "open") == (o.status in OPEN))
            ]
            return Response(json=[o.to_json() for o in out[:limit]])

    def _replace(self, request: Request) -> Response:
        body = request.json or {}
        stall = 0.0
        with self.lock:
            old = self._find(request)
            if old is None:
                return Response.error(404, "order not found", code=40410000)
            if old.status not in OPEN or old.triggered:
                return Response.error(422, f"order is not replaceable (status {old.status})", code=42210000)
            if self.refuse_replace:
                return Response.error(422, "replacing this order type is not supported", code=42210000)
            cid = body.get("client_order_id") or str(uuid.uuid4())
            if self.by_client_id(cid) is not None:
                return Response.error(422, "client_order_id must be unique", code=40010001)
            new = FakeOrder(
                symbol=old.symbol,
                side=old.side,
                type=old.type,
                client_order_id=cid,
                time_in_force=old.time_in_force,
                qty=D(str(body["qty"])) if body.get("qty") is not None else old.qty,
                notional=old.notional,
                stop_price=D(str(body["stop_price"])) if body.get("stop_price") is not None else old.stop_price,
                limit_price=D(str(body["limit_price"])) if body.get("limit_price") is not None else old.limit_price,
                status="new",
                replaces=old.id,
            )
            old.status, old.replaced_by, old.updated_at = "replaced", new.id, _now()
            self.orders[new.id] = new
            snapshot = new.to_json()
            if self._stalls:
                stall = self._stalls.pop(0)
        if stall:
            time.sleep(stall)
        return Response(json=snapshot)

    def _cancel(self, request: Request) -> Response:
        with self.lock:
            order = self._find(request)
            if order is None:
                return Response.error(404, "order not found", code=40410000)
            if order.status not in OPEN:
                return Response.error(422, f'order is already in "{order.status}" state', code=42210000)
            order.status, order.canceled_at, order.updated_at = "canceled", _now(), _now()
        return Response(status=204, body=b"")

    def _position_json(self, pos: FakePosition) -> dict[str, Any]:
        px = self.prices.get(pos.symbol, D(0))
        avg = pos.cost / pos.qty if pos.qty else D(0)
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, pos.symbol)),
            "symbol": _norm(pos.symbol),
            "exchange": "CRYPTO",
            "asset_class": "crypto",
            "asset_marginable": False,
            "avg_entry_price": _s(avg),
            "qty": _s(pos.qty),
            "side": "long",
            "market_value": _s(pos.qty * px),
            "cost_basis": _s(pos.cost),
            "unrealized_pl": _s(pos.qty * px - pos.cost),
            "unrealized_plpc": "0",
            "unrealized_intraday_pl": "0",
            "unrealized_intraday_plpc": "0",
            "current_price": _s(px),
            "lastday_price": _s(px),
            "change_today": "0",
            "qty_available": _s(pos.qty - self.held(pos.symbol)),
        }

    def _positions(self, _: Request) -> Response:
        with self.lock:
            return Response(json=[self._position_json(p) for p in self.positions.values() if p.qty > 0])

    def _position(self, request: Request) -> Response:
        with self.lock:
            pos = self.positions.get(_slash(request.path_params["symbol"]))
            if pos is None:
                return Response.error(404, "position does not exist", code=40410000)
            return Response(json=self._position_json(pos))


def install(fake: FakeAlpaca) -> None:
    """Called by FakeAlpaca(): registers the trading routes and sets `fake.trading`."""
    state = TradingState(fake)
    fake.trading = state
    add = fake.server.add_route
    add("GET", r"/v2/account", state._account)
    add("GET", r"/v2/assets/(?P<symbol>.+)", state._asset)
    add("POST", r"/v2/orders", state._submit)
    add("GET", r"/v2/orders", state._list_orders)
    add("GET", r"/v2/orders:by_client_order_id", state._get_by_client_id)
    add("GET", r"/v2/orders/(?P<order_id>[^/:]+)", state._get_order)
    add("PATCH", r"/v2/orders/(?P<order_id>[^/:]+)", state._replace)
    add("DELETE", r"/v2/orders/(?P<order_id>[^/:]+)", state._cancel)
    add("GET", r"/v2/positions", state._positions)
    add("GET", r"/v2/positions/(?P<symbol>.+)", state._position)
