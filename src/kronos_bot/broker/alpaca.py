"""Alpaca through alpaca-py's `TradingClient`: paper by default, live only behind two switches.

Safety rules this adapter enforces (issue 6):
  * Live trading needs `broker.live: true` AND `KRONOS_BOT_LIVE_TRADING=I_UNDERSTAND`; anything else
    with `live: true` refuses at start (`LiveTradingRefused`). Without `live`, always the paper endpoint.
  * Our retry policy (`kronos_bot.retry`) is the one in force. alpaca-py's RESTClient retries 429/504
    itself (3 x 3 s sleeps, `alpaca/common/rest.py`) and sends requests without any timeout; we set its
    retry count to 0 and give its `requests.Session` our timeout, then retry ourselves: reads on
    timeouts/5xx/429 with backoff (Retry-After wins), orders ONLY after looking the order up by
    client_order_id -- so a request whose response was lost can never buy twice. A duplicate
    client_order_id (422) resolves to the existing order. 4xx rejects (403 insufficient balance,
    422 invalid) raise OrderRejected at once: no retry storm.
  * Market buys by notional (GTC), sells by quantity rounded DOWN to the asset's min_trade_increment;
    orders below min_order_size / the configured min notional raise OrderSkipped without being sent.
  * 401 (and 403 on a read) means our keys are refused: `BrokerAuthError`, never retried, reported as the
    `broker_auth` degraded state; other outages after the retries as `broker`. Both end at the next
    answered request. While one is active, retries are logged at debug and counted (`degraded.end`).
  * Asset info (increments, minimums) is cached; it changes rarely.
Money is Decimal everywhere except the floats alpaca-py's request models insist on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide as AlpacaSide
from alpaca.trading.enums import QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, MarketOrderRequest, ReplaceOrderRequest, StopLimitOrderRequest

from kronos_bot import retry
from kronos_bot.broker.base import (
    QTY_STEP_DEFAULT,
    ZERO,
    Account,
    AssetInfo,
    BrokerAuthError,
    BrokerError,
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
    normalize_symbol,
    round_down,
    to_decimal,
)
from kronos_bot.config import Settings
from kronos_bot.logs import get_logger, register_secrets
from kronos_bot.retry import Failure, OutageLog, RetryFailed, RetryPolicy, describe_transport_error, parse_retry_after

LIVE_CONFIRM_VALUE = "I_UNDERSTAND"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS_READS = frozenset({401, 403})
# First retry delay (doubles per attempt). Candidate config field: broker.backoff_seconds.
BACKOFF_SECONDS = 1.0
# Longest single wait between attempts (a long Retry-After included), seconds.
MAX_RETRY_DELAY_SECONDS = 60.0
# Asset rules are re-read after this long. Candidate config field: broker.asset_cache_seconds.
ASSET_CACHE_SECONDS = 6 * 3600.0
# After DELETE, how long to wait for a pending_cancel to become final.
CANCEL_SETTLE_SECONDS = 5.0

_OPEN_STATES = {
    "new",
    "accepted",
    "pending_new",
    "accepted_for_bidding",
    "pending_cancel",
    "pending_replace",
    "pending_review",
    "held",
    "calculated",
    "stopped",
    "suspended",
}
_CANCELED_STATES = {"canceled", "expired", "done_for_day"}

log = get_logger("kronos_bot.broker.alpaca")
T = TypeVar("T")


class LiveTradingRefused(BrokerError):
    """`broker.live` is set without the confirming environment variable (or keys are missing)."""


class BrokerConfigError(BrokerError):
    """The Alpaca broker cannot start (no API keys...)."""


def resolve_paper(settings: Settings) -> bool:
    """True for paper. Live only with `broker.live: true` AND KRONOS_BOT_LIVE_TRADING=I_UNDERSTAND."""
    confirm = settings.live_trading_confirm.get_secret_value() if settings.live_trading_confirm else None
    if settings.broker.live:
        if confirm != LIVE_CONFIRM_VALUE:
            raise LiveTradingRefused(
                "broker.live is true but the environment variable KRONOS_BOT_LIVE_TRADING is not set to "
                f"{LIVE_CONFIRM_VALUE}: refusing to trade real money. Set both, or set broker.live: false for paper."
            )
        return False
    if confirm == LIVE_CONFIRM_VALUE:
        log.warning(
            "broker.live_confirm_ignored", detail="KRONOS_BOT_LIVE_TRADING is set but broker.live is false: paper"
        )
    return True


class _TimeoutSession(requests.Session):
    """alpaca-py calls `session.request` without a timeout; this one always has ours."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def install_request_policy(client: TradingClient, timeout: float) -> TradingClient:
    """Make our policy the one in force: no built-in 429/504 sleeps-and-retries, a timeout on every request.

    Relies on RESTClient's `_retry` and `_session` attributes (alpaca-py 0.4x); a test guards them.
    """
    if not hasattr(client, "_retry") or not hasattr(client, "_session"):
        raise RuntimeError("alpaca-py internals changed: cannot disable its retry loop / set timeouts")
    client._retry = 0  # _one_request raises APIError instead of RetryException when retry == 0
    client._session = _TimeoutSession(timeout)
    return client


def _status_of(exc: APIError) -> int | None:
    try:
        return exc.status_code
    except Exception:
        return None


def _message_of(exc: APIError) -> tuple[str, str | None]:
    try:
        body = json.loads(str(exc))
        return str(body.get("message", exc)), str(body.get("code")) if body.get("code") is not None else None
    except (ValueError, TypeError, AttributeError):
        return str(exc), None


def _unexpected_4xx(what: str, status: int | None, message: str, code: str | None) -> str:
    """Why a 4xx is an outage: Alpaca always sends a JSON error with a code, so a bare one came from
    something else (a wrong trading URL, a proxy); Alpaca's own 4xx on the account or positions means
    the endpoint itself is wrong."""
    if code is None:
        return (
            f"{what}: HTTP {status} without Alpaca's error body ({message[:80] or 'empty'}): "
            "is broker.trading_url_override right?"
        )
    return f"{what}: HTTP {status}: {message} (code {code})"


def _classify(exc: BaseException) -> Failure | None:
    """Timeouts, dropped connections, malformed JSON, 408/429/5xx may be retried (Retry-After wins);
    anything else is not ours to retry (an OrderRejected, a 404 the caller reads as "not found")."""
    if isinstance(exc, APIError):
        status = _status_of(exc)
        if status not in RETRYABLE_STATUS:
            return None
        response = getattr(exc, "response", None)
        header = response.headers.get("Retry-After") if response is not None else None
        return Failure(True, f"{type(exc).__name__}: {exc}"[:300], status, parse_retry_after(header))
    if isinstance(exc, json.JSONDecodeError):
        return Failure(True, f"malformed JSON: {exc}"[:300])
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return Failure(True, describe_transport_error(exc))
    return None


def _order_type(value: Any) -> OrderType:
    raw = getattr(value, "value", value)
    try:
        return OrderType(raw)
    except ValueError:
        return OrderType.OTHER


def _normalize_status(raw: str) -> OrderStatus:
    if raw == "filled":
        return OrderStatus.FILLED
    if raw == "partially_filled":
        return OrderStatus.PARTIALLY_FILLED
    if raw in _CANCELED_STATES:
        return OrderStatus.CANCELED
    if raw == "replaced":
        return OrderStatus.REPLACED
    if raw == "rejected":
        return OrderStatus.REJECTED
    return OrderStatus.OPEN


def order_result(order: Any) -> OrderResult:
    """alpaca-py `Order` -> our OrderResult (Decimal via str, symbol as BASE/USD)."""
    raw = getattr(order.status, "value", str(order.status))
    side = getattr(order.side, "value", order.side)
    return OrderResult(
        order_id=str(order.id),
        client_order_id=order.client_order_id,
        symbol=normalize_symbol(order.symbol or ""),
        side=OrderSide(side),
        type=_order_type(order.type or order.order_type),
        status=_normalize_status(raw),
        raw_status=raw,
        qty=to_decimal(order.qty),
        notional=to_decimal(order.notional),
        filled_qty=to_decimal(order.filled_qty) or ZERO,
        filled_avg_price=to_decimal(order.filled_avg_price),
        stop_price=to_decimal(order.stop_price),
        limit_price=to_decimal(order.limit_price),
        submitted_at=order.submitted_at,
        filled_at=order.filled_at,
        replaced_by=str(order.replaced_by) if order.replaced_by else None,
    )


class AlpacaBroker:
    """The `Broker` protocol over alpaca-py. Build with `from_settings` (checks the live switches)."""

    name = "alpaca"

    def __init__(
        self,
        client: TradingClient,
        *,
        paper: bool = True,
        min_notional: Decimal = ZERO,
        max_attempts: int = 3,
        backoff_seconds: float = BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        asset_cache_seconds: float = ASSET_CACHE_SECONDS,
        cancel_settle_seconds: float = CANCEL_SETTLE_SECONDS,
        health: OutageLog | None = None,
    ) -> None:
        self.client = client
        self.health = health
        self.paper = paper
        self.min_notional = min_notional
        self.max_attempts = max(1, max_attempts)
        self.sleep = sleep
        self.policy = RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_seconds=backoff_seconds,
            max_delay_seconds=MAX_RETRY_DELAY_SECONDS,
            sleep=sleep,
            repeats=(lambda event: health.repeat(("broker", "broker_auth"), event)) if health is not None else None,
        )
        self.asset_cache_seconds = asset_cache_seconds
        self.cancel_settle_seconds = cancel_settle_seconds
        self._assets: dict[str, tuple[datetime, AssetInfo]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AlpacaBroker:
        """The broker for these settings; `health` (the trader's DegradedTracker) may be passed to report outages."""
        paper = resolve_paper(settings)
        if not settings.has_alpaca_keys:
            raise BrokerConfigError(
                "the Alpaca broker needs ALPACA_API_KEY and ALPACA_SECRET_KEY in the environment or .env"
            )
        assert settings.alpaca_api_key is not None and settings.alpaca_secret_key is not None
        register_secrets([settings.alpaca_api_key, settings.alpaca_secret_key])
        client = TradingClient(
            api_key=settings.alpaca_api_key.get_secret_value(),
            secret_key=settings.alpaca_secret_key.get_secret_value(),
            paper=paper,
            url_override=settings.broker.trading_url_override,
        )
        install_request_policy(client, settings.broker.request_timeout_seconds)
        log.info(
            "broker.started",
            broker="alpaca",
            mode="paper" if paper else "LIVE",
            url=settings.broker.trading_url_override or ("paper-api" if paper else "api"),
        )
        return cls(
            client,
            paper=paper,
            min_notional=Decimal(str(settings.sizing.min_notional)),
            max_attempts=settings.broker.max_attempts,
            **{"backoff_seconds": settings.broker.backoff_seconds, **kwargs},
        )

    # ----- request policy -----

    def _answered(self) -> None:
        """The broker answered: an outage or a refusal of our keys is over."""
        if self.health is not None:
            self.health.clear("broker")
            self.health.clear("broker_auth")

    def _down(self, exc: BrokerUnavailable) -> BrokerUnavailable:
        if self.health is not None:
            if isinstance(exc, BrokerAuthError):
                self.health.set("broker_auth", str(exc), fix=BrokerAuthError.FIX)
            else:
                self.health.set("broker", str(exc), fix=BrokerUnavailable.FIX)
        return exc

    def _auth_error(self, what: str, exc: APIError) -> BrokerAuthError:
        status = _status_of(exc)
        message, _ = _message_of(exc)
        return BrokerAuthError(f"{what}: HTTP {status}: {message}", status_code=status)

    def _read(self, what: str, call: Callable[[], T], *, answers_4xx: bool = True) -> T:
        """A read (GET, or an idempotent DELETE): retried on timeouts/5xx/429, else BrokerUnavailable;
        401/403 (our keys refused) raise BrokerAuthError at once; other 4xx propagate for the caller
        (a lookup's 404 means "not found"). With `answers_4xx=False` (the account, positions, open
        orders: a 4xx there means a wrong URL or a broken endpoint, never an answer) they are an outage:
        BrokerUnavailable with the status and the broker's message, and the `broker` degraded state."""

        def attempt(_number: int) -> T:
            try:
                result = call()
            except APIError as exc:
                status = _status_of(exc)
                if status in AUTH_STATUS_READS:
                    raise self._down(self._auth_error(what, exc)) from exc
                if status not in RETRYABLE_STATUS:
                    message, code = _message_of(exc)
                    if code is None or not answers_4xx:
                        raise self._down(BrokerUnavailable(_unexpected_4xx(what, status, message, code))) from exc
                    self._answered()  # Alpaca's own 404/422 is an answer: the broker is there
                raise
            self._answered()
            return result

        def on_retry(number: int, delay: float, failure: Failure) -> None:
            self.policy.log(log, "broker.retry", what=what, attempt=number, delay=delay, error=failure.description)

        try:
            return retry.call(attempt, policy=self.policy, classify=_classify, on_retry=on_retry)
        except RetryFailed as exc:
            raise self._down(BrokerUnavailable(f"{what}: {exc.failure.description}")) from exc.__cause__

    def _order_call(self, what: str, client_order_id: str, call: Callable[[], Any]) -> OrderResult:
        """POST/PATCH an order: after any failure that may have reached the broker, look the order up by its
        client_order_id BEFORE retrying; never resend an order the broker already has."""

        def attempt(_number: int) -> OrderResult:
            try:
                return self._send_order(what, client_order_id, call)
            except (APIError, requests.Timeout, requests.ConnectionError, json.JSONDecodeError) as exc:
                found = self._recover(what, client_order_id, exc)
                if found is not None:
                    return found
                raise

        def on_retry(number: int, delay: float, failure: Failure) -> None:
            self.policy.log(
                log,
                "order.retry",
                what=what,
                client_order_id=client_order_id,
                attempt=number,
                delay=delay,
                error=failure.description,
            )

        try:
            return retry.call(attempt, policy=self.policy, classify=_classify, on_retry=on_retry)
        except RetryFailed as exc:
            raise self._down(
                BrokerUnavailable(
                    f"{what} {client_order_id}: no answer after {exc.attempts} attempts: {exc.failure.description}"
                )
            ) from exc.__cause__

    def _send_order(self, what: str, client_order_id: str, call: Callable[[], Any]) -> OrderResult:
        """One request; a refusal that no retry can change becomes OrderRejected (or BrokerAuthError)."""
        try:
            answer = call()
        except APIError as exc:
            status = _status_of(exc)
            message, code = _message_of(exc)
            if status == 401:
                raise self._down(self._auth_error(what, exc)) from exc
            self._answered()
            if status == 422 and "unique" in message.lower():
                existing = self.get_order_by_client_id(client_order_id)
                if existing is not None:
                    log.info("order.duplicate_resolved", client_order_id=client_order_id, order_id=existing.order_id)
                    return existing
            if status not in RETRYABLE_STATUS:
                raise OrderRejected(f"{what} rejected ({status}): {message}", status_code=status, code=code) from exc
            raise
        self._answered()
        return order_result(answer)

    def _recover(self, what: str, client_order_id: str, error: BaseException) -> OrderResult | None:
        """After a failure that may have reached the broker: the order as the broker has it, if it does."""
        try:
            found = self.get_order_by_client_id(client_order_id)
        except BrokerAuthError:
            raise
        except BrokerUnavailable as exc:
            # Still unknown; resending is safe anyway: the broker refuses a duplicate client_order_id.
            log.warning("order.lookup_failed", client_order_id=client_order_id, error=str(exc))
            return None
        if found is not None:
            log.info(
                "order.recovered",
                what=what,
                client_order_id=client_order_id,
                order_id=found.order_id,
                error=type(error).__name__,
            )
        return found

    # ----- reads -----

    def get_account(self) -> Account:
        acct: Any = self._read("get_account", self.client.get_account, answers_4xx=False)
        cash = to_decimal(acct.cash) or ZERO
        buying_power = to_decimal(acct.non_marginable_buying_power) or to_decimal(acct.buying_power) or cash
        equity = to_decimal(acct.equity) or to_decimal(acct.portfolio_value) or cash
        blocked = bool(acct.trading_blocked or acct.account_blocked or acct.trade_suspended_by_user)
        return Account(
            cash=cash,
            buying_power=buying_power,
            equity=equity,
            currency=acct.currency or "USD",
            trading_blocked=blocked,
        )

    def get_asset(self, symbol: str) -> AssetInfo:
        cached = self._assets.get(symbol)
        now = datetime.now(UTC)
        if cached and now - cached[0] < timedelta(seconds=self.asset_cache_seconds):
            return cached[1]
        try:
            asset: Any = self._read(f"get_asset {symbol}", lambda: self.client.get_asset(symbol))
        except APIError as exc:
            raise BrokerError(f"asset {symbol}: {_message_of(exc)[0]}") from exc
        info = AssetInfo(
            symbol=symbol,
            min_order_size=to_decimal(asset.min_order_size) or ZERO,
            min_trade_increment=to_decimal(asset.min_trade_increment) or QTY_STEP_DEFAULT,
            price_increment=to_decimal(asset.price_increment) or QTY_STEP_DEFAULT,
            tradable=bool(asset.tradable) and getattr(asset.status, "value", asset.status) == "active",
        )
        self._assets[symbol] = (now, info)
        return info

    def get_positions(self) -> list[BrokerPosition]:
        positions: Any = self._read("get_positions", self.client.get_all_positions, answers_4xx=False)
        return [
            BrokerPosition(
                symbol=normalize_symbol(p.symbol),
                qty=to_decimal(p.qty) or ZERO,
                avg_entry_price=to_decimal(p.avg_entry_price) or ZERO,
                market_value=to_decimal(p.market_value),
                qty_available=to_decimal(p.qty_available),
            )
            for p in positions
        ]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        return next((p for p in self.get_positions() if p.symbol == symbol), None)

    def get_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, symbols=[symbol] if symbol else None)
        orders: Any = self._read("get_orders", lambda: self.client.get_orders(request), answers_4xx=False)
        return [order_result(o) for o in orders]

    def get_order(self, order_id: str) -> OrderResult:
        try:
            return order_result(self._read(f"get_order {order_id}", lambda: self.client.get_order_by_id(order_id)))
        except APIError as exc:
            if _status_of(exc) == 404:
                raise OrderNotFound(order_id) from exc
            raise BrokerError(f"get_order {order_id}: {_message_of(exc)[0]}") from exc

    def get_order_by_client_id(self, client_order_id: str) -> OrderResult | None:
        try:
            order = self._read(
                f"get_order_by_client_id {client_order_id}", lambda: self.client.get_order_by_client_id(client_order_id)
            )
        except APIError as exc:
            if _status_of(exc) in (404, 422):
                return None
            raise BrokerError(f"get_order_by_client_id {client_order_id}: {_message_of(exc)[0]}") from exc
        return order_result(order)

    # ----- orders -----

    def buy_notional(
        self, symbol: str, notional: Decimal, client_order_id: str, price_hint: Decimal | None = None
    ) -> OrderResult:
        notional = check_buy_notional(notional, self.get_asset(symbol), price_hint, self.min_notional)
        request = MarketOrderRequest(
            symbol=symbol,
            notional=float(notional),
            side=AlpacaSide.BUY,
            time_in_force=TimeInForce.GTC,
            client_order_id=client_order_id,
        )
        return self._order_call("buy", client_order_id, lambda: self.client.submit_order(request))

    def sell_qty(self, symbol: str, qty: Decimal, client_order_id: str) -> OrderResult:
        qty = check_sell_qty(qty, self.get_asset(symbol), None, ZERO)
        request = MarketOrderRequest(
            symbol=symbol,
            qty=float(qty),
            side=AlpacaSide.SELL,
            time_in_force=TimeInForce.GTC,
            client_order_id=client_order_id,
        )
        return self._order_call("sell", client_order_id, lambda: self.client.submit_order(request))

    def place_stop_limit_sell(
        self, symbol: str, qty: Decimal, stop_price: Decimal, limit_price: Decimal, client_order_id: str
    ) -> OrderResult:
        asset = self.get_asset(symbol)
        qty = check_sell_qty(qty, asset, None, ZERO)
        request = StopLimitOrderRequest(
            symbol=symbol,
            qty=float(qty),
            side=AlpacaSide.SELL,
            time_in_force=TimeInForce.GTC,
            stop_price=float(round_down(stop_price, asset.price_increment)),
            limit_price=float(round_down(limit_price, asset.price_increment)),
            client_order_id=client_order_id,
        )
        return self._order_call("stop_limit", client_order_id, lambda: self.client.submit_order(request))

    def replace_stop_limit(
        self, order_id: str, stop_price: Decimal, limit_price: Decimal, client_order_id: str
    ) -> OrderResult:
        current = self.get_order(order_id)
        if not current.is_open:
            raise OrderRejected(f"order {order_id} is {current.raw_status}: cannot replace", status_code=422)
        asset = self.get_asset(current.symbol)
        request = ReplaceOrderRequest(
            stop_price=float(round_down(stop_price, asset.price_increment)),
            limit_price=float(round_down(limit_price, asset.price_increment)),
            client_order_id=client_order_id,
        )
        return self._order_call("replace", client_order_id, lambda: self.client.replace_order_by_id(order_id, request))

    def cancel_order(self, order_id: str) -> OrderResult:
        """Cancel, then return the order's final state. A fill that beat the cancel comes back FILLED."""
        try:
            self._read(f"cancel_order {order_id}", lambda: self.client.cancel_order_by_id(order_id))
        except APIError as exc:
            status = _status_of(exc)
            if status == 404:
                raise OrderNotFound(order_id) from exc
            if status != 422:  # 422: not cancelable (already filled/canceled) -> read its state below
                raise BrokerError(f"cancel {order_id}: {_message_of(exc)[0]}") from exc
        waited = 0.0
        order = self.get_order(order_id)
        while order.is_open and waited < self.cancel_settle_seconds:
            self.sleep(0.2)
            waited += 0.2
            order = self.get_order(order_id)
        return order
