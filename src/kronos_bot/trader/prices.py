"""Latest prices for exits and the dry-run broker, from the best source that works right now, sanity-checked.

Exits must keep running through a market-data outage: the order of preference is Alpaca's latest trade,
then the broker's own valuation of the position (market value / qty), then nothing. A price older than
`max_age` is never used: a trailing stop on a stale price is worse than a skipped check. Every new price
also passes the jump check of `price_guard` (when `max_jump_percent` is set, as the trader sets it from
`exits.max_price_jump_percent`): a suspect one is held back -- `price()` answers None for that symbol --
until the latest quote's mid or the next tick confirms it, so one bad print can neither raise a
high-water mark nor sell a position. Each suspect episode is logged once when it starts and once when it
ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from kronos_bot.broker.base import Broker, BrokerError
from kronos_bot.logs import get_logger
from kronos_bot.trader.health import DegradedTracker
from kronos_bot.trader.price_guard import GuardState, Outcome, Screened, note_bar, reference, screen

log = get_logger("kronos_bot.trader.prices")


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
        max_jump_percent: float | None = None,
    ) -> None:
        self.market = market
        self.broker = broker
        self.health = health or DegradedTracker()
        self.max_age = max_age
        self.clock = clock
        self.max_jump_percent = max_jump_percent
        self._prices: dict[str, tuple[Decimal, datetime, str]] = {}
        self._guard: dict[str, GuardState] = {}
        self._lock = threading.Lock()
        # Set while asking the broker: a broker that values positions through this book (the sim) must
        # get the cached price back, not start another refresh (that would recurse forever).
        self._in_fallback = threading.local()

    def refresh(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """One request for all symbols; symbols it misses fall back to the broker's valuation."""
        now = self.clock()
        incoming: dict[str, tuple[Decimal, str]] = {}
        try:
            for symbol, price in self.market.latest_prices(list(symbols)).items():
                incoming[symbol] = (price, "market_data")
            missing = [s for s in symbols if s not in incoming]
            self.health.update("market_data", f"no latest trade for {', '.join(missing)}" if missing else None)
        except Exception as exc:  # the market-data client raises its own errors; none may stop exits
            self.health.set("market_data", f"latest trades failed: {exc}")
        missing = [s for s in symbols if s not in incoming]
        # The simulated broker values positions with our own prices: nothing to fall back on there.
        if missing and self.broker is not None and getattr(self.broker, "name", "") != "sim":
            incoming.update(self._from_broker(missing))
        fresh = self._screened(incoming, now)
        return {symbol: value[0] for symbol, value in fresh.items()}

    def cached(self, symbol: str) -> tuple[Decimal, datetime] | None:
        """The last accepted price and when it was seen, without asking anyone (metrics, status)."""
        with self._lock:
            entry = self._prices.get(symbol)
        return (entry[0], entry[1]) if entry is not None else None

    def note_bars(self, last_bars: Mapping[str, tuple[Decimal, Decimal]]) -> None:
        """The entry cycle's last closed bar per symbol, (low, high): the second reference of the jump check."""
        with self._lock:
            for symbol, (low, high) in last_bars.items():
                self._guard[symbol] = note_bar(self._guard.get(symbol, GuardState()), low, high)

    def suspect(self, symbol: str) -> bool:
        """True while a suspect price of `symbol` is held back."""
        with self._lock:
            state = self._guard.get(symbol)
        return state is not None and state.suspect is not None

    def _screened(
        self, incoming: Mapping[str, tuple[Decimal, str]], now: datetime
    ) -> dict[str, tuple[Decimal, datetime, str]]:
        """Pass every new price through the jump check; cache and return the usable ones."""
        if self.max_jump_percent is None:
            fresh = {s: (p, now, source) for s, (p, source) in incoming.items()}
            with self._lock:
                self._prices.update(fresh)
            return fresh
        with self._lock:
            verdicts = {
                s: screen(self._guard.get(s, GuardState()), p, now, self.max_jump_percent)
                for s, (p, _) in incoming.items()
            }
        suspects = [s for s, v in verdicts.items() if not v.usable]
        if suspects:
            mids = self._second_source(suspects)
            with self._lock:
                for symbol in suspects:
                    if mids.get(symbol) is not None:
                        verdicts[symbol] = screen(
                            self._guard.get(symbol, GuardState()),
                            incoming[symbol][0],
                            now,
                            self.max_jump_percent,
                            second=mids[symbol],
                        )
        usable: dict[str, tuple[Decimal, datetime, str]] = {}
        with self._lock:
            for symbol, verdict in verdicts.items():
                before = self._guard.get(symbol, GuardState())
                self._guard[symbol] = verdict.state
                if verdict.usable:
                    usable[symbol] = (incoming[symbol][0], now, incoming[symbol][1])
                    self._prices[symbol] = usable[symbol]
                else:
                    self._prices.pop(symbol, None)  # nothing older stands in for a price we do not believe
                self._log(symbol, before, verdict, incoming[symbol][0], now)
        return usable

    def _second_source(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The latest quote mids (an independent price of the same moment), when the source offers them."""
        quotes: Callable[[Sequence[str]], dict[str, Decimal]] | None = getattr(self.market, "latest_quote_mids", None)
        if quotes is None:
            return {}
        try:
            return quotes(list(symbols))
        except Exception as exc:
            log.debug("prices.quote_failed", symbols=list(symbols), error=str(exc))
            return {}

    def _log(self, symbol: str, before: GuardState, verdict: Screened, price: Decimal, now: datetime) -> None:
        ref = reference(before)
        jump = None if ref is None or ref == 0 else round(float(price / ref - 1) * 100, 3)
        fields: dict[str, Any] = {
            "symbol": symbol,
            "price": price,
            "reference": ref,
            "jump_percent": jump,
            "max_jump_percent": self.max_jump_percent,
        }
        if verdict.started and verdict.ended:
            log.warning("price.jump_confirmed", **fields, confirmed_by="quote")
        elif verdict.started:
            log.warning(
                "price.suspect",
                **fields,
                reason="no reference price yet" if ref is None else "jump beyond max_price_jump_percent",
                effect="held back: it moves no stop until the quote or the next tick confirms it",
            )
        elif verdict.ended:
            since = before.suspect_since or now
            log.info(
                "price.suspect_end",
                symbol=symbol,
                price=price,
                suspect=before.suspect,
                outcome="confirmed" if verdict.outcome is Outcome.CONFIRMED else "dropped",
                ticks=before.suspect_ticks,
                duration_seconds=round((now - since).total_seconds(), 1),
            )

    def _from_broker(self, symbols: Sequence[str]) -> dict[str, tuple[Decimal, str]]:
        out: dict[str, tuple[Decimal, str]] = {}
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
                out[symbol] = (position.market_value / position.qty, "broker_position")
        return out

    def price(self, symbol: str) -> Decimal | None:
        """The freshest usable price, refreshing for this symbol when the cached one is too old."""
        now = self.clock()
        with self._lock:
            cached = self._prices.get(symbol)
        if cached and now - cached[1] <= self.max_age:
            return cached[0]
        if getattr(self._in_fallback, "active", False) or self.suspect(symbol):
            # A held-back price is judged again by the next tick's refresh, never by a second fetch of the
            # same moment (which would only "confirm" the same bad print).
            return None
        return self.refresh([symbol]).get(symbol)

    __call__ = price
