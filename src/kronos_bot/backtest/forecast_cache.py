"""Kronos forecasts on disk, so a re-run with other thresholds never recomputes the model.

Key = namespace (model fingerprint + every sampling setting) + entry (symbol, open time of the last
closed bar, number of bars, content hash of the validated window). The fingerprint is the live cache's
`model_fingerprint(forecaster.model_info())` (checkpoint hashes, configs, device, threads); the content
hash means a changed data file can never be answered with a forecast of other bars. `backtest` and
`evaluate` build identical keys for the same window, so they share entries.

Misses are computed through the live `forecast_symbols` (its batching and its handling of a rejected
series or an unavailable forecaster), one call per chunk of replayed hours. A forecast depends on the
batch it is sampled in (one random stream per call; each row draws from a position fixed by its index),
so a chunk is padded with copies of a real window to a row count that depends only on how many of its
cells were cache hits, never on whether later bars are valid: a bar after `t` cannot change a forecast
at `t`. Forecasts sampled without a seed are not cached (they would not be reproducible anyway).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

import pandas as pd

from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.forecast_types import Forecaster, SamplingParams, SeriesForecast
from kronos_bot.forecaster.schemas import SeriesOut, series_forecast, series_out
from kronos_bot.gates.forecast_cache import ForecastCache, forecast_symbols, model_fingerprint

KIND = "forecast"
PAD_PREFIX = "~pad"


def forecast_key(symbol: str, last_bar: datetime, count: int, digest: str) -> str:
    return f"{symbol}|{last_bar.isoformat()}|{count}|{digest}"


@dataclass(frozen=True)
class ForecastJob:
    """One window to forecast: its cache key and the validated bars."""

    key: str
    symbol: str
    last_bar: datetime
    frame: pd.DataFrame

    @property
    def series_id(self) -> str:
        # Unique within a batch that spans several hours; the stored forecast carries the plain symbol.
        return f"{self.symbol}@{self.last_bar:%Y%m%dT%H%M}"


class ForecastBook:
    """Forecasts for one (model, sampling) pair: disk hits, and misses computed in batches."""

    def __init__(self, forecaster: Forecaster, store: CacheStore | None, params: SamplingParams) -> None:
        self.forecaster = forecaster
        self.params = params
        self.store = store if params.seed is not None else None
        self.model_info = forecaster.model_info()
        self.fingerprint = model_fingerprint(self.model_info)
        self.namespace = f"{self.fingerprint}|{json.dumps(asdict(params), sort_keys=True)}"
        self._raw = self.store.load(KIND, self.namespace) if self.store is not None else {}
        self._memory: dict[str, SeriesForecast] = {}
        self.hits = 0
        self.computed = 0
        self.calls = 0
        self.padded_rows = 0
        self.compute_seconds = 0.0

    def __contains__(self, key: str) -> bool:
        return key in self._memory or key in self._raw

    def lookup(self, key: str) -> SeriesForecast | None:
        """The cached forecast for `key`, or None (counted as a hit only when found)."""
        found = self._memory.get(key)
        if found is None:
            raw = self._raw.get(key)
            if raw is None:
                return None
            try:
                found = series_forecast(SeriesOut.model_validate_json(raw))
            except ValueError:
                return None  # an unreadable entry is a miss; it is overwritten when recomputed
        self.hits += 1
        return found

    def compute(self, jobs: Sequence[ForecastJob], rows: int = 0) -> dict[str, SeriesForecast | str]:
        """Forecast `jobs` in one forecaster call (padded to `rows`); key -> forecast or the reason why not."""
        if not jobs:
            return {}
        batch: dict[str, pd.DataFrame] = {job.series_id: job.frame for job in jobs}
        for i in range(max(0, rows - len(jobs))):
            batch[f"{PAD_PREFIX}{i}"] = jobs[0].frame
        self.padded_rows += max(0, rows - len(jobs))
        started = time.perf_counter()
        results = forecast_symbols(batch, self.forecaster, self.params, ForecastCache())
        self.compute_seconds += time.perf_counter() - started
        self.calls += 1
        out: dict[str, SeriesForecast | str] = {}
        for job in jobs:
            result = results.get(job.series_id, "forecaster returned nothing for this series")
            if isinstance(result, SeriesForecast):
                result = replace(result, id=job.symbol)
                self.computed += 1
                self._memory[job.key] = result
                if self.store is not None:
                    self.store.put(KIND, self.namespace, job.key, series_out(result, 0.0).model_dump_json())
            out[job.key] = result
        return out

    def stats(self) -> dict[str, object]:
        return {
            "model_fingerprint": self.fingerprint,
            "cached": self.hits,
            "computed": self.computed,
            "forecaster_calls": self.calls,
            "padding_rows": self.padded_rows,
            "compute_seconds": round(self.compute_seconds, 3),
        }
