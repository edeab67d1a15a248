"""Forecast quality on history (`kronos-bot evaluate`): Kronos vs naive baselines, by regime.

At each origin `t` (a bar close, every `stride` hours) and symbol: the window the live cycle would feed
Kronos (`validate_bars` at now = t), the forecast of it (from the disk cache shared with `backtest`, or
computed in batches), and the actual close `horizon` bars later. The Kronos numbers are read through the
live `kronos_gate` with `horizon` set to the evaluated one: the predicted close is the mean path's close
at the horizon, P(up) the share of sampled paths ending above the last close (one path: 0 or 1).
Scoring is in `forecast_scores` (definitions there), per forecast with the live trader's own scores
(`kronos_bot.skill.scores`); Kronos's forecasts also get the full skill table (Brier and CRPS skill
against the no-change random walk, coverage, PIT) exactly as `kronos-bot skill` computes it live.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import BarStore
from kronos_bot.backtest.forecast_cache import ForecastBook, ForecastJob, forecast_key
from kronos_bot.backtest.forecast_scores import (
    DRIFT,
    KRONOS,
    NO_CHANGE,
    Outcome,
    drift_forecast,
    no_change_forecast,
    regime,
)
from kronos_bot.backtest.memo import check_window
from kronos_bot.backtest.period import Period
from kronos_bot.config import KronosGateSettings, Settings
from kronos_bot.forecast_types import Forecaster, SeriesForecast
from kronos_bot.gates.forecast_cache import sampling_params
from kronos_bot.gates.kronos import kronos_gate
from kronos_bot.skill.scores import ForecastFacts, facts_from_paths, score_many
from kronos_bot.skill.summary import ScoredForecast, skill_report

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class EvaluateOptions:
    horizon: int = 4  # bars ahead
    stride: int = 1  # hours between origins
    drift_window: int = 24  # log returns averaged by the drift baseline
    trend_threshold: float = 0.3  # efficiency ratio at or above which a window is "trending"
    bins: int = 10  # reliability bins
    batch_hours: int = 4  # origins per forecaster call


@dataclass
class EvaluateRun:
    settings: Settings
    period: Period
    options: EvaluateOptions
    outcomes: list[Outcome] = field(default_factory=list)
    # Kronos's forecasts scored with the live trader's scores (`skill.scores`), and their table.
    scored: list[ScoredForecast] = field(default_factory=list)
    skill: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    forecasts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def evaluation_gate_settings(settings: KronosGateSettings, horizon: int) -> KronosGateSettings:
    """The Kronos gate set to read the evaluated horizon (P(up) against the last close exactly)."""
    return KronosGateSettings.model_validate(
        {
            **settings.model_dump(),
            "pred_len": max(settings.pred_len, horizon),
            "horizon": horizon,
            "ensemble_threshold_percent": 0.0,
        }
    )


def origins(period: Period, horizon: int, stride: int) -> list[datetime]:
    """Bar closes t whose horizon bar (opening at t + horizon - 1 h) closes within the period."""
    last = period.end - horizon * HOUR
    return [t for t in period.boundaries() if t <= last][:: max(1, stride)]


def run_evaluate(
    settings: Settings,
    store: BarStore,
    period: Period,
    *,
    forecaster: Forecaster,
    cache: CacheStore | None = None,
    options: EvaluateOptions = EvaluateOptions(),
    progress: Callable[[int, int, str], None] | None = None,
) -> EvaluateRun:
    started = time.perf_counter()
    gate = evaluation_gate_settings(settings.gates.kronos, options.horizon)
    book = ForecastBook(forecaster, cache, sampling_params(gate, settings.forecaster.max_context))
    run = EvaluateRun(settings, period, options)
    skipped: Counter[str] = Counter()
    to_score: list[tuple[str, datetime, ForecastFacts, float]] = []
    times = origins(period, options.horizon, options.stride)
    symbols = list(settings.symbols)
    done = 0
    try:
        for i in range(0, len(times), max(1, options.batch_hours)):
            chunk = times[i : i + options.batch_hours]
            cells: dict[tuple[datetime, str], Any] = {}
            for t in chunk:
                for symbol in symbols:
                    actual_bar = store.bar(symbol, t + (options.horizon - 1) * HOUR)
                    checked, frame = check_window(store.window(symbol, t, settings.bars), settings.bars)
                    if frame is None:
                        skipped[f"bars: {checked.problem.reason if checked.problem else 'invalid'}"] += 1
                    elif actual_bar is None:
                        skipped["no bar at the horizon"] += 1
                    else:
                        cells[(t, symbol)] = (checked, frame, float(actual_bar.close))
            forecasts: dict[tuple[datetime, str], SeriesForecast | str] = {}
            jobs: dict[tuple[datetime, str], ForecastJob] = {}
            for key, (checked, frame, _) in cells.items():
                fkey = forecast_key(checked.symbol, checked.last_bar, checked.count, checked.digest)
                found = book.lookup(fkey)
                if found is not None:
                    forecasts[key] = found
                else:
                    jobs[key] = ForecastJob(fkey, checked.symbol, checked.last_bar, frame)
            if jobs:
                hits = len(forecasts)
                computed = book.compute(list(jobs.values()), rows=len(chunk) * len(symbols) - hits)
                forecasts.update({key: computed[job.key] for key, job in jobs.items()})
            for (t, symbol), (checked, frame, actual) in cells.items():
                result = forecasts[(t, symbol)]
                if isinstance(result, str):
                    skipped[f"forecast: {result[:80]}"] += 1
                    continue
                verdict = kronos_gate(result, checked.last_close, gate)
                if verdict.pred_close is None or verdict.p_up is None:
                    skipped[f"forecast: {verdict.reason[:80]}"] += 1
                    continue
                closes = frame["close"].astype(float).tolist()
                last = float(checked.last_close)
                index = options.horizon - 1
                horizon_closes = [path[index] for path in result.path_closes if len(path) > index]
                if horizon_closes:
                    facts = facts_from_paths(last, verdict.pred_close, horizon_closes, closes, options.horizon)
                    to_score.append((symbol, t, facts, actual))
                run.outcomes.append(
                    Outcome(
                        symbol=symbol,
                        time=t,
                        regime=regime(closes, options.trend_threshold),
                        last_close=last,
                        actual=actual,
                        predictions={
                            KRONOS: (verdict.pred_close, verdict.p_up),
                            NO_CHANGE: no_change_forecast(last),
                            DRIFT: drift_forecast(closes, options.horizon, options.drift_window),
                        },
                    )
                )
            if cache is not None:
                cache.flush()
            done += len(chunk)
            if progress is not None:
                progress(done, len(times), f"forecasts: {book.computed} computed, {book.hits} cached")
    finally:
        if cache is not None:
            cache.flush()
    scores = score_many([f for _, _, f, _ in to_score], [a for _, _, _, a in to_score])
    run.scored = [ScoredForecast(sym, t, sc) for (sym, t, _, _), sc in zip(to_score, scores, strict=True)]
    run.skill = skill_report(run.scored)
    run.skipped = dict(skipped)
    run.forecasts = book.stats()
    run.seconds = time.perf_counter() - started
    return run
