"""Shared set-up for trader tests: settings pointed at the fake Alpaca, scripted forecasters, fixture bars."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import structlog
import yaml

from kronos_bot.config import Settings, load_settings
from kronos_bot.forecast_types import (
    Candle,
    ForecasterUnavailable,
    SamplingParams,
    SeriesForecast,
    SeriesInput,
)
from kronos_bot.logs import configure_logging
from kronos_bot.market.bars import load_bars_csv
from tests.conftest import FIXTURES, SHIPPED_CONFIG

SYMBOLS = ("BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD")
# The fixture slices end with the bar opened at 2024-12-31T23:00Z; it closes at midnight.
LAST_BAR_OPEN = datetime(2024, 12, 31, 23, tzinfo=UTC)
CYCLE_NOW = LAST_BAR_OPEN + timedelta(hours=1, seconds=30)


class JsonLogs:
    """Logging configured exactly as in production (JSON renderer, context vars) into a buffer."""

    def __enter__(self) -> JsonLogs:
        self.stream = io.StringIO()
        configure_logging(level="INFO", fmt="json", stream=self.stream)
        return self

    def __exit__(self, *exc: object) -> None:
        structlog.reset_defaults()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.startswith("{")]


def fixture_bars(symbol: str) -> pd.DataFrame:
    return load_bars_csv(FIXTURES / "bars" / f"{symbol.replace('/', '_')}_1h.csv")


def write_settings(tmp_path: Path, fake_base_url: str | None, **sections: Mapping[str, Any]) -> Path:
    """The shipped config with the fake Alpaca URLs, a tmp journal, and `sections` merged in."""
    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    data["bars"]["data_url_override"] = fake_base_url
    data["broker"]["trading_url_override"] = fake_base_url
    data["bars"]["backoff_seconds"] = 0.0
    data["broker"]["backoff_seconds"] = 0.0
    data["broker"]["fill_timeout_seconds"] = 2.0
    data["journal"]["path"] = str(tmp_path / "journal.sqlite")
    data["forecaster"]["mode"] = "inprocess"
    for section, values in sections.items():
        node = data
        path = section.split(".")
        for key in path[:-1]:
            node = node[key]
        if isinstance(values, Mapping) and isinstance(node.get(path[-1]), dict):
            node[path[-1]].update(values)
        else:
            node[path[-1]] = values
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def settings_for(tmp_path: Path, fake_base_url: str | None, **sections: Mapping[str, Any]) -> Settings:
    return load_settings(write_settings(tmp_path, fake_base_url, **sections))


def load_market(fake: Any, symbols: Sequence[str] = SYMBOLS, *, trade_price_factor: float = 1.0) -> None:
    """Fixture bars on the fake data API, and a latest trade at the last close (× factor)."""
    for symbol in symbols:
        df = fixture_bars(symbol)
        fake.market.set_bars(symbol, df)
        fake.market.set_latest_trade(symbol, float(df["close"].iloc[-1]) * trade_price_factor, ts=CYCLE_NOW)


class ScriptedForecaster:
    """A deterministic Forecaster: every path of a symbol ends `moves[symbol]` (fraction) above the last close.

    `down = True` makes it raise ForecasterUnavailable, like a stopped service.
    """

    def __init__(self, moves: Mapping[str, float] | None = None, samples_spread: float = 0.0) -> None:
        self.moves = dict(moves or {})
        self.spread = samples_spread
        self.down = False
        self.calls = 0
        self.lock = threading.Lock()

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        with self.lock:
            self.calls += 1
            if self.down:
                raise ForecasterUnavailable("scripted outage")
        out = []
        for s in series:
            last = float(s.close[-1])
            move = self.moves.get(s.id, 0.0)
            step = s.timestamps[-1] - s.timestamps[-2]
            paths = []
            for k in range(params.samples):
                jitter = self.spread * (k - (params.samples - 1) / 2)
                paths.append([last * (1 + (move + jitter) * (i + 1) / params.pred_len) for i in range(params.pred_len)])
            mean = [sum(p[i] for p in paths) / len(paths) for i in range(params.pred_len)]
            candles = [Candle(s.timestamps[-1] + step * (i + 1), c, c, c, c, 0.0, 0.0) for i, c in enumerate(mean)]
            ups = sum(1 for p in paths if p[-1] > last) / len(paths)
            out.append(
                SeriesForecast(
                    id=s.id,
                    last_close=last,
                    candles=candles,
                    path_closes=paths,
                    p_up=ups,
                    close_quantiles={"p10": mean, "p50": mean, "p90": mean},
                )
            )
        return out

    def model_info(self) -> dict[str, object]:
        return {"model": "scripted", "model_revision": "test-rev"}
