"""Helpers shared by tests/test_backtest_*.py and tests/test_evaluate*.py: scripted bars and forecasters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from kronos_bot.backtest.data import BarStore, load_csv_dir
from kronos_bot.backtest.options import backtest_settings
from kronos_bot.config import Settings
from kronos_bot.forecast_types import Candle, SamplingParams, SeriesForecast, SeriesInput
from kronos_bot.market.bars import bars_frame
from tests.forecaster_support import TINY_MODEL, TINY_TOKENIZER

FIXTURE_BARS = Path(__file__).resolve().parent / "fixtures" / "bars"
# The command-line tail of backtest / evaluate / optimize runs in tests: two symbols, the tiny checkpoint.
TINY_BTC_ETH_ARGS = (
    "--symbols",
    "BTC",
    "ETH",
    "--model",
    str(TINY_MODEL),
    "--tokenizer",
    str(TINY_TOKENIZER),
    "--no-verify",
    "--threads",
    "1",
)
HOUR = timedelta(hours=1)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def settings(symbols: Sequence[str] = ("BTC/USD",), **sections: Any) -> Settings:
    """Default settings with some sections replaced, prepared as the backtest command prepares them."""
    return backtest_settings(Settings(**sections), symbols=list(symbols))


def flat_then(
    path: Sequence[tuple[float, float, float, float]], *, start: datetime = T0, warmup: int = 70, price: float = 100.0
) -> pd.DataFrame:
    """`warmup` flat bars at `price`, then the given (open, high, low, close) bars, hourly from `start`."""
    rows = [(price, price, price, price)] * warmup + list(path)
    index = [start + i * HOUR for i in range(len(rows))]
    return bars_frame(
        index,
        {
            "open": [r[0] for r in rows],
            "high": [r[1] for r in rows],
            "low": [r[2] for r in rows],
            "close": [r[3] for r in rows],
            "volume": [1.0] * len(rows),
        },
    )


def trend(count: int, *, start: datetime = T0, price: float = 100.0, step: float = 0.004) -> pd.DataFrame:
    """A steady uptrend (EMA fast above slow, close above EMA slow)."""
    closes = [price * (1 + step) ** i for i in range(count)]
    opens = [closes[0], *closes[:-1]]
    return bars_frame(
        [start + i * HOUR for i in range(count)],
        {
            "open": opens,
            "high": [max(o, c) * 1.001 for o, c in zip(opens, closes, strict=True)],
            "low": [min(o, c) * 0.999 for o, c in zip(opens, closes, strict=True)],
            "close": closes,
            "volume": [1.0] * count,
        },
    )


def fixture_store(symbols: Sequence[str] = ("BTC/USD", "ETH/USD")) -> BarStore:
    return BarStore(load_csv_dir(FIXTURE_BARS, symbols))


class ScriptedForecaster:
    """A deterministic Forecaster: `move(series)` -> predicted change (0.02 = +2 %) for every step and path."""

    def __init__(self, move: Callable[[SeriesInput], float], name: str = "scripted") -> None:
        self.move = move
        self.name = name
        self.calls = 0
        self.series = 0

    def model_info(self) -> dict[str, object]:
        return {"backend": self.name, "version": 1}

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        self.calls += 1
        self.series += len(series)
        out = []
        for s in series:
            last = float(s.close[-1])
            predicted = last * (1 + self.move(s))
            stamps = [s.timestamps[-1] + (k + 1) * HOUR for k in range(params.pred_len)]
            candles = [
                Candle(ts, last, max(last, predicted), min(last, predicted), predicted, 1.0, 1.0) for ts in stamps
            ]
            closes = [[predicted] * params.pred_len for _ in range(params.samples)]
            out.append(
                SeriesForecast(
                    id=s.id,
                    last_close=last,
                    candles=candles,
                    path_closes=closes,
                    p_up=1.0 if predicted > last else 0.0,
                    close_quantiles={q: [predicted] * params.pred_len for q in ("p10", "p50", "p90")},
                )
            )
        return out


def up_at(*times: datetime, move: float = 0.02) -> Callable[[SeriesInput], float]:
    """Predict +move for windows whose last bar opens at `times - 1h` (decisions at `times`), else flat."""
    wanted = {t - HOUR for t in times}
    return lambda s: move if s.timestamps[-1] in wanted else 0.0


class CountingForecaster:
    """Wraps a Forecaster and counts its forecast calls (the disk-cache test)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def model_info(self) -> dict[str, object]:
        return self.inner.model_info()

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        self.calls += 1
        return self.inner.forecast(series, params)
