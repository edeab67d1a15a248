"""Forecasts for a cycle: cached per (symbol, last closed bar, model, sampling), misses in ONE batch.

Why cache: the entry cycle runs every 15 minutes but bars close hourly, so three of every four cycles
see exactly the bars the previous one saw. A forecast costs seconds of CPU; recomputing it would also
let sampling noise flip the verdict between cycles on identical data. The key holds everything that
changes the answer: the symbol, the open time of the last closed bar, the number of bars fed, a hash
of the model's identity (`Forecaster.model_info()`) and the sampling parameters (including the seed).

Why one batch: the forecaster (service or in-process) runs the model once for all series of a request,
so the cache misses of a cycle go out together.

Only the newest entry per symbol is kept: a forecast for an older bar is never asked for again, so the
cache stays four entries small. If the forecaster cannot even tell its model identity (service down),
the last identity seen is used to look up the cache, so a forecast already made for this bar still
serves; misses then become UNAVAILABLE with the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from kronos_bot.config import KronosGateSettings
from kronos_bot.domain import KronosResult
from kronos_bot.forecast_types import (
    Forecaster,
    ForecasterUnavailable,
    ForecastInputError,
    SamplingParams,
    SeriesForecast,
    SeriesInput,
)
from kronos_bot.gates.kronos import kronos_gate, unavailable
from kronos_bot.logs import get_logger

# Below this many sampled paths P(up) moves in steps of 1/samples and the skill scores are coarse.
MIN_CALIBRATION_SAMPLES = 16
_coarse_warned: set[int] = set()

# model_info() keys that describe the running process rather than the model; left out of the cache key.
VOLATILE_MODEL_INFO_KEYS = frozenset({"uptime_seconds", "started_at", "requests", "queue", "load_seconds", "rss_mb"})

log = get_logger("kronos_bot.forecast")


@dataclass(frozen=True)
class CacheKey:
    symbol: str
    last_bar: datetime
    bars: int
    model: str
    params: SamplingParams


def sampling_params(settings: KronosGateSettings, max_context: int = 512) -> SamplingParams:
    """The SamplingParams the Kronos gate's config asks for."""
    return SamplingParams(
        pred_len=settings.pred_len,
        samples=settings.samples,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=settings.top_k,
        max_context=max_context,
        seed=settings.seed,
    )


def warn_if_coarse(samples: int) -> None:
    """Once per process: fewer than MIN_CALIBRATION_SAMPLES paths make P(up) and calibration coarse."""
    if samples >= MIN_CALIBRATION_SAMPLES or samples in _coarse_warned:
        return
    _coarse_warned.add(samples)
    log.warning(
        "forecast.coarse_samples",
        samples=samples,
        recommended=MIN_CALIBRATION_SAMPLES,
        detail=f"with {samples} sampled path(s) P(up) moves in steps of {1 / samples:.2f}: its Brier score, "
        "calibration and the CRPS are coarse; set gates.kronos.samples to 16 or more (default 32)",
    )


def model_fingerprint(info: Mapping[str, object]) -> str:
    """A short stable hash of the model identity (volatile process facts excluded)."""
    stable = {k: v for k, v in info.items() if k not in VOLATILE_MODEL_INFO_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def series_input(symbol: str, bars: pd.DataFrame) -> SeriesInput:
    """The forecaster's input from a bars DataFrame (index = UTC open times, OHLCV columns)."""
    return SeriesInput(
        id=symbol,
        timestamps=[ts.to_pydatetime() for ts in bars.index],
        open=bars["open"].astype(float).tolist(),
        high=bars["high"].astype(float).tolist(),
        low=bars["low"].astype(float).tolist(),
        close=bars["close"].astype(float).tolist(),
        volume=bars["volume"].astype(float).tolist(),
    )


class ForecastCache:
    """In-memory, newest entry per symbol (see module doc)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[CacheKey, SeriesForecast]] = {}
        self.last_model: str | None = None
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> SeriesForecast | None:
        entry = self._entries.get(key.symbol)
        if entry is not None and entry[0] == key:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, key: CacheKey, forecast: SeriesForecast) -> None:
        self._entries[key.symbol] = (key, forecast)

    def latest(self, symbol: str, last_bar: datetime) -> SeriesForecast | None:
        """The forecast held for this symbol's window ending at `last_bar` (what the cycle's gate read)."""
        entry = self._entries.get(symbol)
        return entry[1] if entry is not None and entry[0].last_bar == last_bar else None

    def __len__(self) -> int:
        return len(self._entries)


def _key(symbol: str, bars: pd.DataFrame, model: str, params: SamplingParams) -> CacheKey:
    return CacheKey(symbol, bars.index[-1].to_pydatetime(), len(bars), model, params)


def forecast_symbols(
    bars: Mapping[str, pd.DataFrame],
    forecaster: Forecaster | None,
    params: SamplingParams,
    cache: ForecastCache,
) -> dict[str, SeriesForecast | str]:
    """Per symbol its forecast, or a reason string why there is none. At most one forecaster call
    per attempt; a ForecastInputError naming one series drops that series and retries the rest."""
    out: dict[str, SeriesForecast | str] = {}
    symbols = [s for s, df in bars.items() if len(df) > 0]
    for s in bars:
        if s not in symbols:
            out[s] = "no bars"
    if forecaster is None:
        return {**out, **dict.fromkeys(symbols, "no forecaster configured")}

    model: str | None
    model_error: str | None = None
    try:
        model = model_fingerprint(forecaster.model_info())
        cache.last_model = model
    except ForecasterUnavailable as exc:
        model, model_error = cache.last_model, f"forecaster unavailable: {exc}"

    pending: dict[str, CacheKey] = {}
    for symbol in symbols:
        key = _key(symbol, bars[symbol], model or "", params)
        cached = cache.get(key) if model is not None else None
        if cached is not None:
            log.debug("forecast.cache_hit", symbol=symbol, last_bar=key.last_bar.isoformat())
            out[symbol] = cached
        elif model_error is not None:
            out[symbol] = model_error
        else:
            pending[symbol] = key

    while pending:
        batch = [series_input(s, bars[s]) for s in pending]
        try:
            forecasts = forecaster.forecast(batch, params)
        except ForecasterUnavailable as exc:
            log.warning("forecast.unavailable", symbols=list(pending), error=str(exc))
            out.update(dict.fromkeys(pending, f"forecaster unavailable: {exc}"))
            break
        except ForecastInputError as exc:
            log.warning("forecast.input_rejected", symbol=exc.series_id, problem=exc.problem)
            if exc.series_id not in pending:
                out.update(dict.fromkeys(pending, f"forecast input rejected: {exc}"))
                break
            out[exc.series_id] = f"forecast input rejected: {exc.problem}"
            del pending[exc.series_id]
            continue
        by_id = {f.id: f for f in forecasts}
        for symbol, key in pending.items():
            forecast = by_id.get(symbol)
            if forecast is None:
                out[symbol] = "forecaster returned no forecast for this series"
                continue
            cache.put(key, forecast)
            out[symbol] = forecast
        log.info(
            "forecast.computed",
            symbols=list(pending),
            samples=params.samples,
            pred_len=params.pred_len,
            compute_seconds=round(sum(f.compute_seconds for f in forecasts), 3),
        )
        break
    return out


def kronos_gates(
    bars: Mapping[str, pd.DataFrame],
    forecaster: Forecaster | None,
    settings: KronosGateSettings,
    cache: ForecastCache,
    *,
    max_context: int = 512,
) -> dict[str, KronosResult]:
    """One cycle's Kronos verdicts: cached or batched forecasts, then the pure gate per symbol."""
    params = sampling_params(settings, max_context)
    warn_if_coarse(params.samples)
    forecasts = forecast_symbols(bars, forecaster, params, cache)
    results: dict[str, KronosResult] = {}
    for symbol, forecast in forecasts.items():
        df = bars[symbol]
        last_close = float(df["close"].iloc[-1]) if len(df) else None
        if isinstance(forecast, str):
            results[symbol] = unavailable(forecast, settings.method, last_close)
        else:
            results[symbol] = kronos_gate(forecast, last_close, settings)
    return results
