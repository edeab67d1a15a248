"""The wire format of the forecaster service, shared by the service and its client (torch-free).

Pydantic models check the *shape* of a request (types, required fields, tz-aware timestamps, parameter
ranges). The *content* of each series (equal lengths, NaN, high < low, bar counts...) is checked by
`find_problems`, a plain function, so that a 422 can name the series and the bar that is wrong instead of
a JSON path, and so that the client can run the same checks before sending (JSON cannot carry NaN).

Conversions to and from the torch-free contract types in `kronos_bot.forecast_types` live here too, so
the in-process model and the HTTP client return exactly the same objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kronos_bot.forecast_types import Candle, SamplingParams, SeriesForecast, SeriesInput

API_VERSION = "v1"
QUANTILE_KEYS = ("p10", "p50", "p90")
PRICE_COLUMNS = ("open", "high", "low", "close")
# A series id is a symbol or a label; bounded so a hostile request cannot make error messages huge.
MAX_ID_LENGTH = 64

ErrorCode = Literal["invalid_input", "too_large", "unauthorized", "not_ready", "internal"]


class _Wire(BaseModel):
    """Unknown keys are rejected: a misspelt `sample` must not silently become the default."""

    model_config = ConfigDict(extra="forbid")


class SeriesIn(_Wire):
    """One series of closed bars, oldest first; `timestamps` are bar open times with a UTC offset."""

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    timestamps: list[AwareDatetime]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float] | None = None
    amount: list[float] | None = None


class ForecastRequest(_Wire):
    """A batch of series forecast with one set of sampling parameters (defaults = SamplingParams')."""

    series: list[SeriesIn] = Field(min_length=1)
    pred_len: int = Field(4, ge=1, le=512)
    samples: int = Field(1, ge=1, le=1024)
    temperature: float = Field(1.0, gt=0, le=10, allow_inf_nan=False)
    top_p: float = Field(0.9, gt=0, le=1, allow_inf_nan=False)
    top_k: int = Field(0, ge=0)
    # null = a fresh seed per request (paths then differ between identical requests).
    seed: int | None = Field(None, ge=0, lt=2**63)
    # Token window; capped by the service's own max_context (null = the service's).
    max_context: int | None = Field(None, ge=2)

    def cells(self) -> int:
        """The request's size as the service limits it: samples x total bars over all series."""
        return self.samples * sum(len(s.timestamps) for s in self.series)

    def to_inputs(self, service_max_context: int) -> tuple[list[SeriesInput], SamplingParams]:
        """The contract types the model takes; timestamps normalized to UTC."""
        inputs = [
            SeriesInput(
                id=s.id,
                timestamps=[ts.astimezone(UTC) for ts in s.timestamps],
                open=s.open,
                high=s.high,
                low=s.low,
                close=s.close,
                volume=s.volume,
                amount=s.amount,
            )
            for s in self.series
        ]
        max_context = min(self.max_context or service_max_context, service_max_context)
        params = SamplingParams(
            pred_len=self.pred_len,
            samples=self.samples,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_context=max_context,
            seed=self.seed,
        )
        return inputs, params


class CandleOut(_Wire):
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    amount: float


class SeriesOut(_Wire):
    """One series' forecast: mean candles, every path's closes, P(up) at the horizon, close quantiles."""

    id: str
    last_close: float
    candles: list[CandleOut]
    # path_closes[path][step]
    path_closes: list[list[float]]
    p_up: float
    # "p10" / "p50" / "p90" -> one value per predicted step.
    close_quantiles: dict[str, list[float]]
    compute_seconds: float
    # Scalar facts the model adds (e.g. the seed it drew when the request had none), passed through.
    extra: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ForecastResponse(_Wire):
    series: list[SeriesOut]
    # Time spent in the model for the whole batch, and waiting for the one-at-a-time model lock.
    compute_seconds: float
    queue_seconds: float


class Problem(_Wire):
    """One thing wrong with a request; `series` is null when the problem is not about one series."""

    series: str | None = None
    problem: str


class ErrorResponse(_Wire):
    """Every non-2xx answer of the service has this shape, so the client parses one thing."""

    error: ErrorCode
    detail: str
    problems: list[Problem] = Field(default_factory=list)


# ----- content checks (shared by service and client) -----


@dataclass(frozen=True)
class SeriesProblem:
    series: str
    problem: str


def _bar_label(timestamps: Sequence[datetime], index: int) -> str:
    if 0 <= index < len(timestamps):
        ts = timestamps[index]
        stamp = ts.astimezone(UTC).isoformat() if ts.tzinfo else ts.isoformat()
        return f"bar {index} ({stamp})"
    return f"bar {index}"


def check_series(series: SeriesInput | SeriesIn, *, min_bars: int = 1, max_bars: int | None = None) -> str | None:
    """The first problem that makes this series impossible to forecast, or None when it is fine.

    Mirrors the model's own checks (NaN, non-positive prices, high < low, bar counts) so that a bad
    series is refused before it queues for the model; volume and amount must be finite and >= 0.
    """
    timestamps = list(series.timestamps)
    n = len(timestamps)
    columns: dict[str, Sequence[float]] = {name: getattr(series, name) for name in PRICE_COLUMNS}
    for name in ("volume", "amount"):
        values = getattr(series, name)
        if values is not None:
            columns[name] = values
    wrong = [f"{name} has {len(values)}" for name, values in columns.items() if len(values) != n]
    if wrong:
        return f"wrong lengths: {n} timestamps but " + ", ".join(wrong)
    if n < min_bars:
        return f"too few bars: {n} < {min_bars}"
    if max_bars is not None and n > max_bars:
        return f"too many bars: {n} > max_context {max_bars}"
    for i, ts in enumerate(timestamps):
        if ts.tzinfo is None or ts.utcoffset() is None:
            return f"{_bar_label(timestamps, i)}: timestamp has no timezone (UTC expected)"
        if i and ts <= timestamps[i - 1]:
            return f"{_bar_label(timestamps, i)}: timestamps are not strictly increasing"
    for name, values in columns.items():
        for i, raw in enumerate(values):
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                return f"{_bar_label(timestamps, i)}: {name} is {raw!r} (not a finite number)"
            if name in PRICE_COLUMNS and value <= 0:
                return f"{_bar_label(timestamps, i)}: {name} is {value!r} (prices must be > 0)"
            if name not in PRICE_COLUMNS and value < 0:
                return f"{_bar_label(timestamps, i)}: {name} is {value!r} (must be >= 0)"
    for i, (high, low) in enumerate(zip(columns["high"], columns["low"], strict=True)):
        if high < low:
            return f"{_bar_label(timestamps, i)}: high {high!r} < low {low!r}"
    return None


def find_problems(
    series: Sequence[SeriesInput | SeriesIn], *, min_bars: int = 1, max_bars: int | None = None
) -> list[SeriesProblem]:
    """Every series' first problem (all series are reported, not only the first bad one); ids must be unique."""
    problems: list[SeriesProblem] = []
    seen: set[str] = set()
    for s in series:
        if s.id in seen:
            problems.append(SeriesProblem(s.id, "duplicate series id in one request"))
            continue
        seen.add(s.id)
        problem = check_series(s, min_bars=min_bars, max_bars=max_bars)
        if problem is not None:
            problems.append(SeriesProblem(s.id, problem))
    return problems


# ----- conversions between the wire and the contract types -----


def request_payload(series: Sequence[SeriesInput], params: SamplingParams) -> dict[str, Any]:
    """The JSON body for POST /v1/forecast (plain data; the caller checks content first)."""

    def floats(values: Sequence[float] | None) -> list[float] | None:
        return None if values is None else [float(v) for v in values]

    return {
        "series": [
            {
                "id": s.id,
                "timestamps": [ts.astimezone(UTC).isoformat() for ts in s.timestamps],
                "open": floats(s.open),
                "high": floats(s.high),
                "low": floats(s.low),
                "close": floats(s.close),
                "volume": floats(s.volume),
                "amount": floats(s.amount),
            }
            for s in series
        ],
        "pred_len": params.pred_len,
        "samples": params.samples,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "seed": params.seed,
        "max_context": params.max_context,
    }


def series_out(forecast: SeriesForecast, compute_seconds: float) -> SeriesOut:
    """Wire form of one forecast; the batch's compute time is used when the model did not time the series.

    Built from the dataclass's own fields (`asdict`), so the contract and the wire cannot drift apart
    silently: a field one has and the other lacks fails validation here, in the tests."""
    data = asdict(forecast)
    data["compute_seconds"] = forecast.compute_seconds or compute_seconds
    data["extra"] = {k: v for k, v in forecast.extra.items() if v is None or isinstance(v, (str, int, float, bool))}
    return SeriesOut.model_validate(data)


def series_forecast(out: SeriesOut) -> SeriesForecast:
    """Contract form of one wire forecast; timestamps come back tz-aware in UTC."""

    def utc(ts: datetime) -> datetime:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)

    data = out.model_dump()
    data["candles"] = [Candle(**{**c, "timestamp": utc(c["timestamp"])}) for c in data["candles"]]
    return SeriesForecast(**data)
