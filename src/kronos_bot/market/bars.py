"""The last N CLOSED hourly bars per symbol from Alpaca, validated, one DataFrame per symbol.

Shape everywhere (live bars, CSV files, gates, Kronos input): a DataFrame with a tz-aware UTC
`DatetimeIndex` named `timestamp` holding each bar's OPEN time, and float columns
open, high, low, close, volume, oldest first.

Why "closed" matters: Alpaca returns the bar of the current hour while it is still forming; its close
moves every trade. Feeding it to the gates would make the same cycle's decision depend on the second it
ran, so a bar counts only once `open + 1h <= now`.

Why validation is strict and per symbol: a bad bar (NaN, high below close, a stale feed) would silently
skew every indicator and the forecast. A symbol with bad data is skipped this cycle with a `data.invalid`
line naming the reason; the other symbols go on. Nothing is ever guessed, except the documented,
bounded forward-fill of a few missing hours (Alpaca publishes no bar for an hour without trades).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pydantic
from alpaca.data.enums import CryptoFeed
from alpaca.data.requests import CryptoBarsRequest, CryptoLatestQuoteRequest, CryptoLatestTradeRequest
from alpaca.data.timeframe import TimeFrame

from kronos_bot.logs import get_logger
from kronos_bot.market.alpaca_http import CryptoDataClient, MarketDataError, Sleep
from kronos_bot.retry import OutageLog, RetryPolicy

if TYPE_CHECKING:
    from kronos_bot.config import BarsSettings, Settings

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
HOUR = timedelta(hours=1)
HOUR_NS = 3_600_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Hours requested beyond count + max_missing_bars: covers the in-progress bar and a little slack so a
# few missing hours at the start of the window never make a symbol "too short".
FETCH_MARGIN_BARS = 6

log = get_logger("kronos_bot.market")


@dataclass(frozen=True)
class BarsProblem:
    """Why a symbol's bars were not usable this cycle. `reason` is a stable code, `detail` is for people.

    Reasons: fetch_failed, no_bars, bad_columns, not_increasing, misaligned, nan, nonpositive_price,
    ohlc_inconsistent, negative_volume, stale, too_few_bars, gaps_rejected, too_many_missing, range_jump.
    """

    symbol: str
    reason: str
    detail: str


@dataclass(frozen=True)
class ValidBars:
    """Validated bars: exactly `count` consecutive closed hours; `filled` lists forward-filled open times.

    `warnings`: stable codes for data that is usable but odd (`zero_volume`: not one trade in the whole
    window, which a live feed of these coins never shows; the caller logs it once per episode)."""

    df: pd.DataFrame
    filled: tuple[datetime, ...] = ()
    warnings: tuple[str, ...] = ()


# ----- frames -----


def bars_frame(index: Sequence[datetime] | pd.DatetimeIndex, data: dict[str, Sequence[float]]) -> pd.DataFrame:
    """Build the canonical bars DataFrame (UTC open-time index, float OHLCV columns)."""
    idx = pd.DatetimeIndex(pd.to_datetime(list(index), utc=True), name="timestamp")
    frame = pd.DataFrame({col: np.asarray(data[col], dtype=float) for col in BAR_COLUMNS}, index=idx)
    return frame


def empty_bars_frame() -> pd.DataFrame:
    return bars_frame([], {col: [] for col in BAR_COLUMNS})


def load_bars_csv(path: str | PathLike[str]) -> pd.DataFrame:
    """Bars from a CSV `timestamp,open,high,low,close,volume` (timestamp = bar open time, ISO-8601 UTC).

    The format of `../shared/data` and of the test fixtures; the backtest reads the same shape the live
    path produces. Rows are kept in file order: run `validate_bars` to check them.
    """
    raw = pd.read_csv(path)
    missing = [c for c in ("timestamp", *BAR_COLUMNS) if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    idx = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], utc=True), name="timestamp")
    return pd.DataFrame({c: raw[c].to_numpy(dtype=float) for c in BAR_COLUMNS}, index=idx)


def as_utc(ts: datetime) -> datetime:
    """`ts` in UTC; a naive datetime is refused rather than silently read as local time."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got naive {ts!r}")
    return ts.astimezone(UTC)


def floor_hour(ts: datetime) -> datetime:
    return as_utc(ts).replace(minute=0, second=0, microsecond=0)


def to_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch of a tz-aware datetime, exactly (no float rounding)."""
    return (as_utc(ts) - _EPOCH) // _MICROSECOND * 1000


def closed_mask(open_times_ns: np.ndarray, now: datetime) -> np.ndarray:
    """Which bars (by open time, int64 ns) have closed at `now`: open + 1 h <= now."""
    return open_times_ns + HOUR_NS <= to_ns(now)


def closed_bars_only(df: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Drop bars still in progress at `now` (open + 1 h > now), including any dated in the future."""
    return df[closed_mask(pd.DatetimeIndex(df.index).as_unit("ns").asi8, now)]


def fetch_window(now: datetime, settings: BarsSettings) -> tuple[datetime, datetime]:
    """Start and end of the one bars request: enough hours for `count` closed bars plus gaps and slack."""
    hours = settings.count + settings.max_missing_bars + FETCH_MARGIN_BARS
    return floor_hour(now) - hours * HOUR, as_utc(now)


# ----- validation -----


def _ts(value: pd.Timestamp | datetime) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%MZ")


def validate_bars(symbol: str, df: pd.DataFrame, now: datetime, settings: BarsSettings) -> ValidBars | BarsProblem:
    """Check one symbol's bars and return exactly `settings.count` closed hours, or the reason not.

    Pure (no I/O, no logging). Order of checks: columns, closed bars exist, strictly increasing and
    hour-aligned open times, finite values, positive prices, high >= max(open, close), low <= min(open,
    close), volume >= 0, freshness of the last real bar (its close at most max_last_bar_age_minutes ago),
    then the window: the `count` hours ending with the last hour that has closed at `now`. Hours of that
    window without a bar — including hours after the last real bar — are "missing": any at all with
    missing_policy=reject, or more than max_missing_bars, reject the symbol; otherwise they are filled
    with the previous close as open/high/low/close and volume 0 (the market did not trade), and listed
    in `ValidBars.filled` so the caller can log them.
    """

    def problem(reason: str, detail: str) -> BarsProblem:
        return BarsProblem(symbol, reason, detail)

    now = as_utc(now)

    if df is None or len(df) == 0:
        return problem("no_bars", "no bars returned")
    missing_cols = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing_cols or not isinstance(df.index, pd.DatetimeIndex) or df.index.tz is None:
        return problem("bad_columns", f"need a tz-aware DatetimeIndex and columns {', '.join(BAR_COLUMNS)}")
    # numpy on int64 nanoseconds and one float matrix: the same checks cost ~10x less than on pandas
    # objects, which matters to a backtest: ~17,000 windows in a 6-month, 4-symbol run.
    index = df.index.tz_convert(UTC)
    times = index.as_unit("ns").asi8
    values = df.loc[:, list(BAR_COLUMNS)].to_numpy(dtype=float)
    closed = closed_mask(times, now)
    if not closed.all():
        index, times, values = index[closed], times[closed], values[closed]
    if len(times) == 0:
        return problem("no_bars", "no closed bars")

    if len(times) > 1:
        backwards = np.flatnonzero(np.diff(times) <= 0)
        if len(backwards):
            return problem("not_increasing", f"timestamps not strictly increasing at {_ts(index[backwards[0] + 1])}")
    misaligned = np.flatnonzero(times % HOUR_NS != 0)
    if len(misaligned):
        return problem("misaligned", f"bar open time not on the hour: {_ts(index[misaligned[0]])}")

    finite = np.isfinite(values)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        return problem("nan", f"{BAR_COLUMNS[col]} is not a number at {_ts(index[row])}")
    o, h, low, c, v = values.T
    nonpositive = (values[:, :4] <= 0).any(axis=1)
    if nonpositive.any():
        return problem("nonpositive_price", f"price <= 0 at {_ts(index[int(np.argmax(nonpositive))])}")
    high_bad = h < np.maximum(o, c)
    low_bad = low > np.minimum(o, c)
    if high_bad.any() or low_bad.any():
        which = "high < max(open, close)" if high_bad.any() else "low > min(open, close)"
        either = high_bad | low_bad
        first = _ts(index[int(np.argmax(either))])
        return problem("ohlc_inconsistent", f"{which} at {first} ({int(either.sum())} bar(s))")
    negative = v < 0
    if negative.any():
        return problem("negative_volume", f"volume < 0 at {_ts(index[int(np.argmax(negative))])}")

    last_close_time = index[-1] + pd.Timedelta(hours=1)
    age_minutes = (pd.Timestamp(now) - last_close_time).total_seconds() / 60
    if age_minutes > settings.max_last_bar_age_minutes:
        return problem(
            "stale",
            f"last closed bar opened {_ts(index[-1])}, closed {age_minutes:.0f} min ago "
            f"(max {settings.max_last_bar_age_minutes})",
        )

    window_end = to_ns(floor_hour(now) - HOUR)
    window_times = window_end - HOUR_NS * np.arange(settings.count - 1, -1, -1, dtype=np.int64)
    if times[0] > window_times[0]:
        have = int((times >= window_times[0]).sum())
        return problem(
            "too_few_bars",
            f"{have} of {settings.count} bars since {_ts(_timestamp(window_times[0]))}; first bar {_ts(index[0])}",
        )
    rows = np.searchsorted(times, window_times)
    present = (rows < len(times)) & (times[np.minimum(rows, len(times) - 1)] == window_times)
    missing = window_times[~present]
    if len(missing) > 0 and settings.missing_policy == "reject":
        return problem(
            "gaps_rejected",
            f"{len(missing)} missing hour(s), first {_ts(_timestamp(missing[0]))} (missing_policy=reject)",
        )
    if len(missing) > settings.max_missing_bars:
        return problem(
            "too_many_missing",
            f"{len(missing)} missing hour(s) in the last {settings.count} "
            f"(max {settings.max_missing_bars}), first {_ts(_timestamp(missing[0]))}",
        )
    window = pd.DatetimeIndex(window_times, name="timestamp").tz_localize(UTC).as_unit(index.unit)
    filled: tuple[datetime, ...] = ()
    if len(missing) == 0:
        window_values = values[rows]
    else:
        # Forward-fill: a missing hour is a bar at the previous close (the window starts at or after the
        # first real bar, so every missing hour has an earlier bar), with no volume.
        before = np.searchsorted(times, window_times, side="right") - 1
        window_values = values[before].copy()
        gap = ~present
        window_values[gap, :4] = values[before[gap], 3:4]
        window_values[gap, 4] = 0.0
        filled = tuple(_timestamp(ns).to_pydatetime() for ns in missing)
    jump = _range_jump(window_values, window, settings.max_range_multiple)
    if jump is not None:
        return problem("range_jump", jump)
    warnings = ("zero_volume",) if not window_values[:, 4].any() else ()
    return ValidBars(pd.DataFrame(window_values, index=window, columns=list(BAR_COLUMNS)), filled, warnings)


def _range_jump(values: np.ndarray, index: pd.DatetimeIndex, max_multiple: float) -> str | None:
    """Why the window holds a bar no market printed, or None.

    A bar's true range (high/low widened to the previous close, so a gap counts too) is compared with the
    window's median true range: a 10x print, or a bar at ten times the price, is hundreds of medians
    wide, while the real hourly bars of these coins stay under ~15 (the August 2024 crash). Bars of a
    window without any movement (median 0, e.g. filled hours only) are not judged.
    """
    high, low, close = values[:, 1], values[:, 2], values[:, 3]
    previous = np.concatenate((close[:1], close[:-1]))
    true_range = np.maximum(high, previous) - np.minimum(low, previous)
    median = float(np.median(true_range))
    if median <= 0:
        return None
    worst = int(np.argmax(true_range))
    multiple = float(true_range[worst]) / median
    if multiple <= max_multiple:
        return None
    return (
        f"bar at {_ts(index[worst])} spans {multiple:.1f}x the window's median true range "
        f"({float(true_range[worst]):.6g} vs {median:.6g}; max bars.max_range_multiple {max_multiple:g})"
    )


def _timestamp(ns: int | np.integer) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz=UTC)


# ----- fetching -----


def _bars_to_frame(bars: Sequence[object]) -> pd.DataFrame:
    return bars_frame(
        [b.timestamp for b in bars],  # type: ignore[attr-defined]
        {col: [getattr(b, col) for b in bars] for col in BAR_COLUMNS},
    )


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def data_client(settings: Settings, *, sleep: Sleep = time.sleep, health: OutageLog | None = None) -> CryptoDataClient:
    """The alpaca-py data client with the `bars:` timeout and retry policy (keys used when both are set).

    `health`: retries inside an ongoing `market_data` outage are then logged at debug and counted.
    """
    b = settings.bars
    policy = RetryPolicy(
        max_attempts=b.max_attempts,
        backoff_seconds=b.backoff_seconds,
        max_delay_seconds=b.max_retry_delay_seconds,
        sleep=sleep,
        repeats=(lambda event: health.repeat("market_data", event)) if health is not None else None,
    )
    keys = (_secret(settings.alpaca_api_key), _secret(settings.alpaca_secret_key))
    with_keys = all(keys)
    return CryptoDataClient(
        policy,
        timeout_seconds=b.request_timeout_seconds,
        api_key=keys[0] if with_keys else None,
        secret_key=keys[1] if with_keys else None,
        url_override=b.data_url_override,
    )


class AlpacaMarketData:
    """Bars and latest prices for the trader, through one reusable alpaca-py client (keys optional)."""

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Sleep = time.sleep,
        client: CryptoDataClient | None = None,
        health: OutageLog | None = None,
    ) -> None:
        self._bars_settings = settings.bars
        self._health = health
        self._client = client or data_client(settings, sleep=sleep, health=health)
        self._feed = CryptoFeed(settings.bars.feed)
        # Symbols whose last window had no volume at all: warned once when that starts, noted when it ends.
        self._zero_volume: set[str] = set()

    def closed_bars(self, symbols: Sequence[str], now: datetime | None = None) -> dict[str, pd.DataFrame | BarsProblem]:
        """One request for all symbols; per symbol the validated last `count` closed bars, or the problem.

        Logs `data.invalid` (symbol, reason, detail) for each skipped symbol, `data.gap_filled` for filled
        hours and `data.fetch_failed` once when the request itself could not be completed.
        """
        now = as_utc(now or datetime.now(UTC))
        if not symbols:
            return {}
        settings = self._bars_settings
        start, end = fetch_window(now, settings)
        results: dict[str, pd.DataFrame | BarsProblem] = {}
        try:
            request = CryptoBarsRequest(symbol_or_symbols=list(symbols), timeframe=TimeFrame.Hour, start=start, end=end)
            barset = self._client.get_crypto_bars(request, feed=self._feed)
            by_symbol = {s: _bars_to_frame(barset.data.get(s, [])) for s in symbols}  # type: ignore[union-attr]
        except (MarketDataError, pydantic.ValidationError, ValueError, KeyError, TypeError) as exc:
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            # One line for the whole request (each symbol's skip is in its decision); inside an ongoing
            # market_data outage it repeats what `degraded.start` said, so it is debug (and counted).
            self._say(log.error, "data.fetch_failed", what="bars", symbols=list(symbols), error=detail)
            for symbol in symbols:
                results[symbol] = BarsProblem(symbol, "fetch_failed", detail)
            return results

        for symbol in symbols:
            checked = validate_bars(symbol, by_symbol[symbol], now, settings)
            if isinstance(checked, BarsProblem):
                log.warning("data.invalid", symbol=symbol, reason=checked.reason, detail=checked.detail)
                results[symbol] = checked
                continue
            if checked.filled:
                log.info(
                    "data.gap_filled",
                    symbol=symbol,
                    hours=len(checked.filled),
                    filled=[_ts(ts) for ts in checked.filled],
                )
            self._note_zero_volume(symbol, "zero_volume" in checked.warnings)
            results[symbol] = checked.df
        return results

    def _say(self, emit: Callable[..., Any], event: str, **fields: Any) -> None:
        """`emit` the event, or debug while an ongoing market_data outage already says it (counted there)."""
        quiet = self._health is not None and self._health.repeat("market_data", event)
        (log.debug if quiet else emit)(event, **fields)

    def _note_zero_volume(self, symbol: str, zero: bool) -> None:
        if zero and symbol not in self._zero_volume:
            self._zero_volume.add(symbol)
            log.warning(
                "data.zero_volume",
                symbol=symbol,
                bars=self._bars_settings.count,
                detail="not one trade in the whole window: the feed may be broken; the bars are still used",
            )
        elif not zero and symbol in self._zero_volume:
            self._zero_volume.discard(symbol)
            log.info("data.zero_volume_end", symbol=symbol)

    def latest_quote_mids(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """(bid + ask) / 2 of the latest quote per symbol: the second opinion on a suspect latest trade."""
        if not symbols:
            return {}
        quotes = self._client.get_crypto_latest_quote(
            CryptoLatestQuoteRequest(symbol_or_symbols=list(symbols)), feed=self._feed
        )
        mids: dict[str, Decimal] = {}
        for symbol in symbols:
            quote = quotes.get(symbol)
            bid, ask = getattr(quote, "bid_price", None), getattr(quote, "ask_price", None)
            if bid and ask and math.isfinite(bid) and math.isfinite(ask) and 0 < bid <= ask:
                mids[symbol] = (Decimal(str(bid)) + Decimal(str(ask))) / 2
        return mids

    def latest_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Latest trade price per symbol as Decimal; symbols without a usable price are left out (logged)."""
        if not symbols:
            return {}
        try:
            trades = self._client.get_crypto_latest_trade(
                CryptoLatestTradeRequest(symbol_or_symbols=list(symbols)), feed=self._feed
            )
        except (MarketDataError, pydantic.ValidationError, ValueError, KeyError, TypeError) as exc:
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            self._say(log.error, "data.fetch_failed", what="latest_trades", symbols=list(symbols), error=detail)
            return {}
        prices: dict[str, Decimal] = {}
        for symbol in symbols:
            trade = trades.get(symbol)
            price = getattr(trade, "price", None)
            if price is None or not math.isfinite(price) or price <= 0:
                log.warning("data.price_missing", symbol=symbol, price=price)
                continue
            # str() first: Decimal(float) would carry binary noise (65000.1 -> 65000.0999...).
            prices[symbol] = Decimal(str(price))
        return prices


def fetch_closed_bars(
    symbols: Sequence[str], settings: Settings, now: datetime | None = None, *, sleep: Sleep = time.sleep
) -> dict[str, pd.DataFrame | BarsProblem]:
    """One-shot `AlpacaMarketData(settings).closed_bars(symbols, now)` (CLI commands, scripts)."""
    return AlpacaMarketData(settings, sleep=sleep).closed_bars(symbols, now)


def latest_prices(symbols: Sequence[str], settings: Settings, *, sleep: Sleep = time.sleep) -> dict[str, Decimal]:
    """One-shot `AlpacaMarketData(settings).latest_prices(symbols)`."""
    return AlpacaMarketData(settings, sleep=sleep).latest_prices(symbols)
