"""Latest prices for exits and the dry-run broker, from the best source that works right now.

Exits must keep running through a market-data outage: the order of preference is Alpaca's latest trade,
then the broker's own valuation of the position (market value / qty), then nothing. A price older than
`max_age` is never used: a trailing stop on a stale price is worse than a skipped check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from kronos_bot.broker.base import Broker, BrokerError
from kronos_bot.health import DegradedTracker
from kronos_bot.logs import get_logger

log = get_logger("kronos_bot.prices")


class LatestPriceSource(Protocol):
    def latest_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]: ...


class PriceBook:
    """Caches one refresh per tick; `price(symbol)` refreshes on demand when the cached one is too old."""

    def __init__(
        self,
        market: LatestPriceSource,
        *,
        broker: Broker | None = None,
        health: DegradedTracker | None = None,
        max_age: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.market = market
        self.broker = broker
        self.health = health or DegradedTracker()
        self.max_age = max_age
        self.clock = clock
        self._prices: dict[str, tuple[Decimal, datetime, str]] = {}
        self._lock = threading.Lock()
        # Set while asking the broker: a broker that values positions through this book (the sim) must
        # get the cached price back, not start another refresh (that would recurse forever).
        self._in_fallback = threading.local()

    def refresh(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """One request for all symbols; symbols it misses fall back to the broker's valuation."""
        now = self.clock()
        fresh: dict[str, tuple[Decimal, datetime, str]] = {}
        try:
            for symbol, price in self.market.latest_prices(list(symbols)).items():
                fresh[symbol] = (price, now, "market_data")
            missing = [s for s in symbols if s not in fresh]
            self.health.update("market_data", f"no latest trade for {', '.join(missing)}" if missing else None)
        except Exception as exc:  # the market-data client raises its own errors; none may stop exits
            self.health.set("market_data", f"latest trades failed: {exc}")
        missing = [s for s in symbols if s not in fresh]
        # The simulated broker values positions with our own prices: nothing to fall back on there.
        if missing and self.broker is not None and getattr(self.broker, "name", "") != "sim":
            fresh.update(self._from_broker(missing, now))
        with self._lock:
            self._prices.update(fresh)
        return {symbol: value[0] for symbol, value in fresh.items()}

    def _from_broker(self, symbols: Sequence[str], now: datetime) -> dict[str, tuple[Decimal, datetime, str]]:
        out: dict[str, tuple[Decimal, datetime, str]] = {}
        self._in_fallback.active = True
        try:
            positions = {p.symbol: p for p in self.broker.get_positions()} if self.broker else {}
        except BrokerError as exc:
            log.debug("prices.broker_fallback_failed", error=str(exc))
            return out
        finally:
            self._in_fallback.active = False
        for symbol in symbols:
            position = positions.get(symbol)
            if position and position.market_value and position.qty > 0:
                out[symbol] = (position.market_value / position.qty, now, "broker_position")
        return out

    def price(self, symbol: str) -> Decimal | None:
        """The freshest usable price, refreshing for this symbol when the cached one is too old."""
        now = self.clock()
        with self._lock:
            cached = self._prices.get(symbol)
        if cached and now - cached[1] <= self.max_age:
            return cached[0]
        if getattr(self._in_fallback, "active", False):
            return None
        return self.refresh([symbol]).get(symbol)

    __call__ = price
