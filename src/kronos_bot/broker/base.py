"""The broker interface every part of the bot trades through, and the plain value types it speaks.

Two implementations share it: `alpaca.AlpacaBroker` (alpaca-py against Alpaca paper/live) and
`sim.SimBroker` (dry-run and backtests). Callers (the executor, the exit monitor, reconciliation) only see
this module, so a dry run and a paper run follow exactly the same code path, as in Freqtrade.

Money and quantities are `Decimal` here; floats only appear inside the Alpaca adapter where alpaca-py
insists on them. Quantities are rounded DOWN to the asset's `min_trade_increment` (never sell more than
is held, never spend more than was sized); orders too small for the asset are refused with
`OrderSkipped` and a reason instead of being sent to be rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

ZERO = Decimal(0)
# Alpaca accepts up to 9 decimal places in crypto qty/notional; our default rounding step.
QTY_STEP_DEFAULT = Decimal("0.000000001")
CENT = Decimal("0.01")


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    STOP_LIMIT = "stop_limit"
    # Only seen on orders the bot did not place (reconciliation lists every open order).
    LIMIT = "limit"
    STOP = "stop"
    OTHER = "other"


class OrderStatus(StrEnum):
    """Our normalized view of an order's state (the broker's own word is kept in `OrderResult.raw_status`)."""

    OPEN = "open"  # new / accepted / pending_*: may still fill
    PARTIALLY_FILLED = "partially_filled"  # some filled, rest may still fill
    FILLED = "filled"
    CANCELED = "canceled"  # canceled / expired / done_for_day: final, maybe with a partial fill
    REPLACED = "replaced"  # superseded by another order (a backstop moved up)
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REPLACED, OrderStatus.REJECTED)


class BrokerError(Exception):
    """Base of every broker failure the bot handles."""


class OrderRejected(BrokerError):
    """The broker refused the order (403 insufficient balance, 422 invalid...). Never retried."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class OrderSkipped(BrokerError):
    """We did not send the order: it is below the asset's minimum size or the configured minimum notional.

    `reason` is a stable code (`below_min_order_size`, `below_min_notional`, `zero_qty`, `not_tradable`).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerUnavailable(BrokerError):
    """The broker could not be reached or kept failing (timeouts, 5xx, 429) after our retries."""

    FIX = (
        "check the machine's network and DNS, https://status.alpaca.markets, and broker.trading_url_override; "
        "entries pause, exits keep trying every tick"
    )


class BrokerAuthError(BrokerUnavailable):
    """The broker refuses our credentials (401, or 403 on a read): nothing works until the keys are fixed.

    A kind of BrokerUnavailable, so every caller that pauses on an outage pauses here too (entries stop,
    exits keep trying); retrying sooner would not help, so it is never retried within a call.
    """

    FIX = (
        "check ALPACA_API_KEY / ALPACA_SECRET_KEY in the environment or .env: paper keys work only with "
        "broker.live: false and live keys only with broker.live: true; regenerate revoked keys in the "
        "Alpaca dashboard, then restart"
    )

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class OrderNotFound(BrokerError):
    """No order with that id / client_order_id exists at the broker."""


@dataclass(frozen=True)
class Account:
    """What the engine needs of the account: cash, what may be spent on crypto now, total equity."""

    cash: Decimal
    buying_power: Decimal
    equity: Decimal
    currency: str = "USD"
    trading_blocked: bool = False


@dataclass(frozen=True)
class AssetInfo:
    """Trading rules of one asset (cached by the brokers; Alpaca's assets endpoint changes rarely)."""

    symbol: str
    min_order_size: Decimal = ZERO
    min_trade_increment: Decimal = QTY_STEP_DEFAULT
    price_increment: Decimal = QTY_STEP_DEFAULT
    tradable: bool = True


@dataclass(frozen=True)
class BrokerPosition:
    """A holding at the broker; `qty` is what is really held (after the fee taken in the coin)."""

    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    market_value: Decimal | None = None
    qty_available: Decimal | None = None  # qty not held by open sell orders


@dataclass(frozen=True)
class OrderRequest:
    """One order as we want it sent. Market buys carry `notional`, sells carry `qty`."""

    symbol: str
    side: OrderSide
    type: OrderType
    client_order_id: str
    notional: Decimal | None = None
    qty: Decimal | None = None
    stop_price: Decimal | None = None
    limit_price: Decimal | None = None
    time_in_force: str = "gtc"


@dataclass(frozen=True)
class OrderResult:
    """An order as the broker reports it.

    `fee` is in `fee_asset` (the coin for buys, USD for sells) when the broker tells us; Alpaca's order
    endpoint does not, so it stays None there and the executor derives it from the position quantity.
    """

    order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    status: OrderStatus
    raw_status: str = ""
    qty: Decimal | None = None
    notional: Decimal | None = None
    filled_qty: Decimal = ZERO
    filled_avg_price: Decimal | None = None
    stop_price: Decimal | None = None
    limit_price: Decimal | None = None
    fee: Decimal | None = None
    fee_asset: str | None = None
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    replaced_by: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    @property
    def filled_notional(self) -> Decimal:
        return self.filled_qty * (self.filled_avg_price or ZERO)


@runtime_checkable
class Broker(Protocol):
    """What the bot needs of a broker. Implementations: AlpacaBroker, SimBroker."""

    name: str

    def get_account(self) -> Account: ...

    def get_asset(self, symbol: str) -> AssetInfo: ...

    def get_positions(self) -> list[BrokerPosition]: ...

    def get_position(self, symbol: str) -> BrokerPosition | None: ...

    def get_open_orders(self, symbol: str | None = None) -> list[OrderResult]: ...

    def get_order(self, order_id: str) -> OrderResult: ...

    def get_order_by_client_id(self, client_order_id: str) -> OrderResult | None: ...

    def buy_notional(
        self, symbol: str, notional: Decimal, client_order_id: str, price_hint: Decimal | None = None
    ) -> OrderResult:
        """Market buy for `notional` USD, GTC. Idempotent per client_order_id.

        `price_hint` (e.g. the last close) lets the broker refuse buys below the asset's min_order_size.
        """
        ...

    def sell_qty(self, symbol: str, qty: Decimal, client_order_id: str) -> OrderResult:
        """Market sell of `qty` (rounded down to the asset's increment), GTC. Idempotent per client_order_id."""
        ...

    def place_stop_limit_sell(
        self, symbol: str, qty: Decimal, stop_price: Decimal, limit_price: Decimal, client_order_id: str
    ) -> OrderResult: ...

    def replace_stop_limit(
        self, order_id: str, stop_price: Decimal, limit_price: Decimal, client_order_id: str
    ) -> OrderResult:
        """Move a resting stop_limit; returns the NEW order (Alpaca replaces by creating a new order)."""
        ...

    def cancel_order(self, order_id: str) -> OrderResult:
        """Cancel and return the order's final state; a filled order comes back FILLED (the broker wins)."""
        ...


# ----- helpers shared by both implementations -----


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """Round `value` down to a multiple of `step` (quantities: never more than held or sized)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def to_decimal(value: object) -> Decimal | None:
    """str/float/int -> Decimal via str (floats from alpaca-py models must not carry binary noise)."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def check_sell_qty(qty: Decimal, asset: AssetInfo, price_hint: Decimal | None, min_notional: Decimal) -> Decimal:
    """Round a sell quantity down to the increment and refuse it (OrderSkipped) when too small to send.

    The notional check for sells only applies when a price is known; exits of small remnants are better
    attempted than kept forever, so callers pass `min_notional=0` for exits if they want that.
    """
    if not asset.tradable:
        raise OrderSkipped("not_tradable", f"{asset.symbol} is not tradable")
    rounded = round_down(qty, asset.min_trade_increment)
    if rounded <= 0:
        raise OrderSkipped("zero_qty", f"qty {qty} rounds down to 0 at increment {asset.min_trade_increment}")
    if asset.min_order_size and rounded < asset.min_order_size:
        raise OrderSkipped("below_min_order_size", f"qty {rounded} < min_order_size {asset.min_order_size}")
    if price_hint is not None and min_notional and rounded * price_hint < min_notional:
        raise OrderSkipped("below_min_notional", f"qty {rounded} x {price_hint} < min notional {min_notional}")
    return rounded


def check_buy_notional(
    notional: Decimal, asset: AssetInfo, price_hint: Decimal | None, min_notional: Decimal
) -> Decimal:
    """Round a buy notional down to cents and refuse it when below the minimums."""
    if not asset.tradable:
        raise OrderSkipped("not_tradable", f"{asset.symbol} is not tradable")
    rounded = round_down(notional, CENT)
    if rounded <= 0 or (min_notional and rounded < min_notional):
        raise OrderSkipped("below_min_notional", f"notional {rounded} < min notional {min_notional}")
    if (
        price_hint is not None
        and price_hint > 0
        and asset.min_order_size
        and rounded / price_hint < asset.min_order_size
    ):
        raise OrderSkipped(
            "below_min_order_size",
            f"notional {rounded} buys {rounded / price_hint:.9f} < min_order_size {asset.min_order_size}",
        )
    return rounded


_CID_SAFE = re.compile(r"[^A-Za-z0-9]")


def client_order_id(
    symbol: str, when: datetime, side: OrderSide | str, seq: int | None = None, prefix: str = "kb"
) -> str:
    """Deterministic client_order_id per (symbol, cycle time, side[, sequence]).

    A retried request (after a timeout, a crash or a restart re-running the same cycle) carries the same
    id, which the broker refuses to accept twice and which we look up before any retry: an entry can never
    be bought twice. Stops and backstops pass a sequence so each placement/replacement is distinct.
    Example: `kb-BTCUSD-buy-20250101T121500` or `kb-BTCUSD-stop-20250101T121500-3`.
    """
    if when.tzinfo is None:
        raise ValueError("client_order_id needs a tz-aware time")
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    base = f"{prefix}-{_CID_SAFE.sub('', symbol)}-{side}-{stamp}"
    return base if seq is None else f"{base}-{seq}"


def normalize_symbol(symbol: str) -> str:
    """Alpaca reports crypto positions as `BTCUSD` and orders as `BTC/USD`; we always use `BASE/USD`."""
    if "/" in symbol:
        return symbol
    for quote in ("USDT", "USDC", "USD", "BTC"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol
