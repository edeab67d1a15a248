"""Torch-free types shared by the Kronos model, the forecaster service, its client and the Kronos gate.

They live outside `kronos_bot.kronos` so that the trader can describe and read forecasts without ever
importing torch; the in-process backend and the HTTP client both speak exactly these types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


class ForecastInputError(ValueError):
    """A series cannot be forecast (NaN, bad prices, wrong lengths...); the message names the series."""

    def __init__(self, series_id: str, problem: str) -> None:
        super().__init__(f"series {series_id!r}: {problem}")
        self.series_id = series_id
        self.problem = problem


class ForecasterUnavailable(RuntimeError):
    """No forecast can be had right now (service down, model not loaded, timeouts)."""


@dataclass(frozen=True)
class SeriesInput:
    """One series of closed bars, oldest first; timestamps are the bars' open times, tz-aware UTC."""

    id: str
    timestamps: Sequence[datetime]
    open: Sequence[float]
    high: Sequence[float]
    low: Sequence[float]
    close: Sequence[float]
    volume: Sequence[float] | None = None
    amount: Sequence[float] | None = None


@dataclass(frozen=True)
class SamplingParams:
    """Generation settings; defaults are the reference implementation's."""

    pred_len: int = 4
    samples: int = 1
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 0
    max_context: int = 512
    seed: int | None = None


@dataclass(frozen=True)
class Candle:
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    amount: float


@dataclass(frozen=True)
class SeriesForecast:
    """The forecast of one series: mean candles over all paths plus every path's closes."""

    id: str
    last_close: float
    candles: list[Candle]
    # path_closes[path][step]: the close of each sampled path at each predicted step.
    path_closes: list[list[float]]
    # Share of paths whose last predicted close is above the last context close.
    p_up: float
    # "p10" / "p50" / "p90" -> one value per predicted step.
    close_quantiles: dict[str, list[float]]
    compute_seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Forecaster(Protocol):
    """What the trader, the backtest and the CLI call; in-process model or HTTP client alike."""

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        """Forecast every series; raises ForecastInputError or ForecasterUnavailable."""
        ...

    def model_info(self) -> dict[str, object]:
        """Ids, revisions, hashes and configs of the loaded model (used in cache keys and logs)."""
        ...
