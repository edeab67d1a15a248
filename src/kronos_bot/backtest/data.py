"""History for backtests: hourly bars per symbol, and look-ahead-safe access to them.

Sources: a directory of `{BASE}_USD_1h.csv` files (the format of `load_bars_csv`, the same shape the live
path produces), or Alpaca's historical bars fetched through our retrying alpaca-py client and kept in a
CSV cache so a re-run does not download again.

Why `BarStore`: the replay asks "which bars had closed at t?" 17,000 times per 6-month run. It answers
from numpy arrays with a binary search instead of filtering DataFrames, and it only ever hands out bars
whose close time (open + 1 h) is <= t, which is the whole no-look-ahead argument for the gates. The
window it returns is the one the live cycle requests from Alpaca (`market.bars.fetch_window`), so
`validate_bars` sees the same number of bars live and in a backtest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from kronos_bot.config import BarsSettings, Settings
from kronos_bot.forecast_types import SeriesInput
from kronos_bot.market.alpaca_http import Sleep
from kronos_bot.market.bars import BAR_COLUMNS, HOUR_NS, bars_frame, fetch_window, load_bars_csv, to_ns

HOUR = timedelta(hours=1)


def csv_name(symbol: str) -> str:
    """`BTC/USD` -> `BTC_USD_1h.csv`."""
    return f"{symbol.replace('/', '_')}_1h.csv"


def load_csv_dir(directory: str | Path, symbols: Sequence[str]) -> dict[str, pd.DataFrame]:
    """One DataFrame per symbol from `{directory}/{BASE}_USD_1h.csv`; a missing file is an error naming it."""
    directory = Path(directory)
    frames: dict[str, pd.DataFrame] = {}
    for symbol in symbols:
        path = directory / csv_name(symbol)
        if not path.is_file():
            raise FileNotFoundError(f"no bars for {symbol}: {path} does not exist")
        frames[symbol] = load_bars_csv(path)
    return frames


def write_bars_csv(path: Path, frame: pd.DataFrame) -> None:
    """The CSV format `load_bars_csv` reads: `timestamp,open,high,low,close,volume`, timestamp ISO UTC."""
    out = frame.loc[:, list(BAR_COLUMNS)].copy()
    out.index = pd.DatetimeIndex(out.index).tz_convert(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.index.name = "timestamp"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    out.to_csv(tmp)  # shortest round-trip repr of every float: the cache loses no digit
    tmp.replace(path)


# ----- Alpaca history with a CSV cache -----


def fetch_alpaca_history(
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    settings: Settings,
    cache_dir: str | Path,
    *,
    client: object | None = None,
    now: datetime | None = None,
    sleep: Sleep = time.sleep,
) -> dict[str, pd.DataFrame]:
    """Hourly bars opening in [start, end) per symbol, from `{cache_dir}/alpaca/` where already fetched.

    The cache remembers, per symbol, the span it covers (`coverage.json`), not just the bars it holds:
    Alpaca publishes no bar for an hour without trades, and such an hour must not be asked for again.
    Only closed bars are cached (open + 1 h <= now), so the in-progress hour is never frozen in.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    end = min(end, now.replace(minute=0, second=0, microsecond=0))
    root = Path(cache_dir) / "alpaca"
    coverage_path = root / "coverage.json"
    coverage: dict[str, list[str]] = json.loads(coverage_path.read_text()) if coverage_path.is_file() else {}
    frames = {
        s: load_bars_csv(root / csv_name(s))
        if (root / csv_name(s)).is_file()
        else bars_frame([], {c: [] for c in BAR_COLUMNS})
        for s in symbols
    }
    missing = _missing_spans(symbols, start, end, coverage)
    if missing:
        client = client or _alpaca_client(settings, sleep)
        for (span_start, span_end), span_symbols in missing.items():
            fetched = _fetch_bars(client, span_symbols, span_start, span_end, settings, now)
            for symbol in span_symbols:
                merged = pd.concat([frames[symbol], fetched[symbol]])
                frames[symbol] = merged[~merged.index.duplicated(keep="last")].sort_index()
        for symbol in symbols:
            span = coverage.get(symbol)
            lo = min(start, datetime.fromisoformat(span[0])) if span else start
            hi = max(end, datetime.fromisoformat(span[1])) if span else end
            coverage[symbol] = [lo.isoformat(), hi.isoformat()]
            write_bars_csv(root / csv_name(symbol), frames[symbol])
        root.mkdir(parents=True, exist_ok=True)
        coverage_path.write_text(json.dumps(coverage, indent=1, sort_keys=True))
    return {s: f[(f.index >= start) & (f.index < end)] for s, f in frames.items()}


def _missing_spans(
    symbols: Sequence[str], start: datetime, end: datetime, coverage: Mapping[str, list[str]]
) -> dict[tuple[datetime, datetime], list[str]]:
    """(span start, span end) -> symbols lacking it: the head and/or tail of [start, end) not covered yet."""
    missing: dict[tuple[datetime, datetime], list[str]] = {}
    for symbol in symbols:
        span = coverage.get(symbol)
        if span is None:
            missing.setdefault((start, end), []).append(symbol)
            continue
        have_start, have_end = (datetime.fromisoformat(s) for s in span)
        if start < have_start:
            missing.setdefault((start, min(have_start, end)), []).append(symbol)
        if have_end < end:
            missing.setdefault((max(have_end, start), end), []).append(symbol)
    return {span: syms for span, syms in missing.items() if span[0] < span[1]}


def _alpaca_client(settings: Settings, sleep: Sleep) -> object:
    """Our retrying alpaca-py data client, configured like the live `AlpacaMarketData`'s."""
    from kronos_bot.market.bars import data_client

    return data_client(settings, sleep=sleep)


def _fetch_bars(
    client: object, symbols: Sequence[str], start: datetime, end: datetime, settings: Settings, now: datetime
) -> dict[str, pd.DataFrame]:
    """One paginated request; per symbol the closed bars opening in [start, end)."""
    from alpaca.data.enums import CryptoFeed
    from alpaca.data.requests import CryptoBarsRequest
    from alpaca.data.timeframe import TimeFrame

    request = CryptoBarsRequest(
        symbol_or_symbols=list(symbols), timeframe=TimeFrame.Hour, start=start, end=end - timedelta(seconds=1)
    )
    barset = client.get_crypto_bars(request, feed=CryptoFeed(settings.bars.feed))  # type: ignore[attr-defined]
    out = {}
    for symbol in symbols:
        bars = barset.data.get(symbol, [])
        frame = bars_frame([b.timestamp for b in bars], {c: [getattr(b, c) for b in bars] for c in BAR_COLUMNS})
        opened = pd.DatetimeIndex(frame.index)
        out[symbol] = frame[(opened >= pd.Timestamp(start)) & (opened + pd.Timedelta(HOUR) <= pd.Timestamp(now))]
    return out


# ----- look-ahead-safe access -----


@dataclass(frozen=True)
class Bar:
    """One hourly bar; prices as Decimal (via str, exact) because exits and fills are money."""

    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def digest(times_ns: np.ndarray, values: np.ndarray) -> str:
    """Content hash of bars: open times (int64 ns) + float64 OHLCV, both C-ordered. Keys caches by data."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(times_ns, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()


def frame_digest(frame: pd.DataFrame) -> str:
    """`digest` of a bars DataFrame (the validated window a forecast is made from)."""
    times = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
    return digest(times, frame.loc[:, list(BAR_COLUMNS)].to_numpy(dtype=np.float64))


def input_digest(series: SeriesInput) -> str:
    """`digest` of a forecaster input; equals `frame_digest` of the frame it was built from."""
    times = pd.DatetimeIndex(list(series.timestamps)).as_unit("ns").asi8
    volume = series.volume if series.volume is not None else [0.0] * len(series.close)
    values = np.column_stack([series.open, series.high, series.low, series.close, volume]).astype(np.float64)
    return digest(times, values)


class SymbolBars:
    """One symbol's bars as arrays; the frame must have strictly increasing open times."""

    def __init__(self, symbol: str, frame: pd.DataFrame) -> None:
        index = pd.DatetimeIndex(frame.index).tz_convert(UTC)
        times = index.as_unit("ns").asi8
        if len(times) > 1 and (np.diff(times) <= 0).any():
            bad = index[1:][np.diff(times) <= 0][0]
            raise ValueError(f"{symbol}: bar open times are not strictly increasing at {bad.isoformat()}")
        self.symbol = symbol
        self.frame = frame.loc[:, list(BAR_COLUMNS)].astype(float)
        self.frame.index = index
        self.times = times
        self.values = np.ascontiguousarray(self.frame.to_numpy(dtype=np.float64))

    def __len__(self) -> int:
        return len(self.times)

    def closed_range(self, start: datetime, now: datetime) -> tuple[int, int]:
        """Row range of bars opening at or after `start` and closed at `now` (open + 1 h <= now)."""
        lo = int(np.searchsorted(self.times, to_ns(start), side="left"))
        hi = int(np.searchsorted(self.times, to_ns(now) - HOUR_NS, side="right"))
        return lo, max(lo, hi)

    def row(self, open_time: datetime) -> int | None:
        i = int(np.searchsorted(self.times, to_ns(open_time), side="left"))
        return i if i < len(self.times) and self.times[i] == to_ns(open_time) else None


@dataclass(frozen=True)
class RawWindow:
    """The closed bars the live cycle would have fetched at `now`, before validation.

    The DataFrame is only built when asked for (`frame`): on a memo hit the content hash is enough.
    """

    symbol: str
    now: datetime
    source: SymbolBars
    lo: int
    hi: int
    digest: str

    @property
    def frame(self) -> pd.DataFrame:
        return self.source.frame.iloc[self.lo : self.hi]


class BarStore:
    """Bars of every symbol of a run; the only way the replay reads market data."""

    def __init__(self, frames: Mapping[str, pd.DataFrame]) -> None:
        self.symbols = list(frames)
        self._bars = {s: SymbolBars(s, f) for s, f in frames.items()}

    def bars(self, symbol: str) -> SymbolBars:
        return self._bars[symbol]

    def window(self, symbol: str, now: datetime, settings: BarsSettings) -> RawWindow:
        """The bars of the live fetch window at `now` that have closed by `now` (nothing later, ever)."""
        bars = self._bars[symbol]
        start, _ = fetch_window(now, settings)
        lo, hi = bars.closed_range(start, now)
        return RawWindow(symbol, now, bars, lo, hi, digest(bars.times[lo:hi], bars.values[lo:hi]))

    def bar(self, symbol: str, open_time: datetime) -> Bar | None:
        """The bar opening at `open_time`, if the data has a usable one (finite, positive prices)."""
        bars = self._bars[symbol]
        i = bars.row(open_time)
        if i is None:
            return None
        o, h, low, c, _ = bars.values[i]
        if not (np.isfinite(bars.values[i, :4]).all() and (bars.values[i, :4] > 0).all()):
            return None  # a broken bar is no price at all, as a failed price lookup is for the live monitor
        return Bar(open_time, _dec(o), _dec(h), _dec(low), _dec(c))

    def mark(self, symbol: str, t: datetime) -> Decimal | None:
        """The price at time `t`: the open of the bar starting at `t`, else the last close before `t`.

        Entries at `t` fill at this price (the next bar's open after the decision's last closed bar); an
        hour without a bar (no trades) leaves the last close standing, as a market that did not trade.
        """
        bars = self._bars[symbol]
        i = int(np.searchsorted(bars.times, to_ns(t), side="left"))
        if i < len(bars.times) and bars.times[i] == to_ns(t):
            value = bars.values[i, 0]
        elif i > 0:
            value = bars.values[i - 1, 3]
        else:
            return None
        return _dec(value) if np.isfinite(value) and value > 0 else None

    def span(self) -> tuple[datetime, datetime]:
        """(first open time over all symbols, last close time over all symbols)."""
        firsts = [b.times[0] for b in self._bars.values() if len(b)]
        lasts = [b.times[-1] for b in self._bars.values() if len(b)]
        if not firsts:
            raise ValueError("no bars at all")
        first = pd.Timestamp(min(firsts), tz=UTC).to_pydatetime()
        last = pd.Timestamp(max(lasts), tz=UTC).to_pydatetime() + HOUR
        return first, last

    def warmed_up_from(self, count: int) -> datetime:
        """The first bar boundary at which every symbol has `count` closed bars (the default `--from`)."""
        starts = [pd.Timestamp(b.times[0], tz=UTC).to_pydatetime() for b in self._bars.values() if len(b)]
        if not starts:
            raise ValueError("no bars at all")
        return max(starts) + count * HOUR
