"""One forecast against what happened, and two naive baselines on the same window. Pure.

Why these scores: zero-shot Kronos on crypto is often close to a coin flip with bands that are too
narrow, so the bot reports, for every forecast it acts on, numbers that reward being right AND honest:
  * direction hit: (predicted > last) == (actual > last); predicted = the mean path's horizon close;
  * Brier score of P(up) (share of paths ending above the last close) against 1[actual > last];
  * CRPS of the horizon close from the sampled paths (proper: rewards sharp AND calibrated ensembles);
  * PIT: where the outcome falls in the ensemble (uniform over many forecasts when calibrated);
  * p10-p90 coverage (about 80 % when calibrated) and the absolute error of the mean path.
Prices are compared as ratios to the last close, so one coin's price level does not outweigh another's:
CRPS and errors are in percent of the last close.

Baselines, from the context's own closes: no-change is a random walk, log(actual / last) ~ N(0, s^2 h)
with s the std of the context's hourly log returns (P(up) = 0.5); drift adds the mean hourly log return
m: N(m h, s^2 h), P(up) = Phi(m sqrt(h) / s). Their CRPS is the lognormal's, in closed form. The proper
scores come from scoringrules (the maintained library for them); the rest is arithmetic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

# Hourly log returns of the context the baselines are fitted on (the last day).
BASELINE_WINDOW = 24


@dataclass(frozen=True)
class ForecastFacts:
    """What scoring one forecast needs, journaled when the forecast is made."""

    last_close: float
    predicted: float  # the mean path's close at the horizon
    p_up: float
    horizon_closes: tuple[float, ...]  # every sampled path's close at the horizon
    p10: float
    p90: float
    sigma: float  # std of the context's hourly log returns (baselines)
    drift: float  # mean of the context's hourly log returns (drift baseline)
    horizon: int  # bars ahead

    def to_json(self) -> dict[str, Any]:
        # Flat fields: a shallow copy (asdict would deep-copy every path close, thousands per backtest).
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"horizon_closes": list(self.horizon_closes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ForecastFacts:
        return cls(**{**data, "horizon_closes": tuple(data["horizon_closes"])})


@dataclass(frozen=True)
class Scores:
    """Kronos's scores for one forecast and the baselines' on the same window."""

    hit: bool
    brier: float
    crps: float  # percent of the last close
    pit: float
    covered: bool  # p10 <= actual <= p90
    abs_error_pct: float
    baseline_brier: float  # no-change random walk
    baseline_crps: float
    drift_hit: bool
    drift_brier: float
    drift_crps: float
    actual: float

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scores:
        return cls(**data)


def context_stats(closes: Sequence[float], window: int = BASELINE_WINDOW) -> tuple[float, float]:
    """(sigma, drift) of the last `window` hourly log returns of a context's closes."""
    recent = [c for c in closes[-(window + 1) :] if c > 0]
    logs = [math.log(b / a) for a, b in itertools.pairwise(recent)]
    if not logs:
        return 0.0, 0.0
    mean = sum(logs) / len(logs)
    var = sum((x - mean) ** 2 for x in logs) / max(len(logs) - 1, 1)
    return math.sqrt(var), mean


def facts_from_paths(
    last_close: float,
    predicted: float,
    horizon_closes: Sequence[float],
    context_closes: Sequence[float],
    horizon: int,
) -> ForecastFacts:
    """ForecastFacts from a forecast's horizon closes (one per path) and its context."""
    closes = sorted(float(c) for c in horizon_closes if math.isfinite(c))
    if not closes:
        raise ValueError("a forecast without finite path closes cannot be scored")
    sigma, drift = context_stats(context_closes)
    return ForecastFacts(
        last_close=float(last_close),
        predicted=float(predicted),
        p_up=sum(1 for c in closes if c > last_close) / len(closes),
        horizon_closes=tuple(closes),
        p10=_quantile(closes, 0.1),
        p90=_quantile(closes, 0.9),
        sigma=sigma,
        drift=drift,
        horizon=horizon,
    )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted values."""
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def direction_hit(predicted: float, last_close: float, actual: float) -> bool:
    """The mean path's direction was right: (predicted > last) == (actual > last)."""
    return (predicted > last_close) == (actual > last_close)


def abs_error_pct(predicted: float, actual: float, last_close: float) -> float:
    return abs(predicted - actual) / last_close * 100.0


def brier_term(p_up: float, up: bool) -> float:
    """One forecast's Brier score of P(up) (0 is perfect, always 0.5 scores 0.25)."""
    import scoringrules as sr

    return float(sr.brier_score(float(up), p_up))


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def score(facts: ForecastFacts, actual: float) -> Scores:
    """Every score of one forecast whose horizon close turned out to be `actual`."""
    return score_many([facts], [actual])[0]


def score_many(facts: Sequence[ForecastFacts], actuals: Sequence[float]) -> list[Scores]:
    """`score` for many forecasts at once (one vectorized call per proper score: a backtest scores
    thousands). Ensembles of different sizes are scored group by group."""
    import numpy as np
    import scoringrules as sr  # imported here: scipy behind it costs the trader ~0.7 s at start otherwise

    if len(facts) != len(actuals):
        raise ValueError(f"{len(facts)} forecasts, {len(actuals)} outcomes")
    n = len(facts)
    if n == 0:
        return []
    last = np.array([f.last_close for f in facts], dtype=float)
    actual = np.array(actuals, dtype=float)
    ratio = actual / last
    up = (actual > last).astype(float)
    p_up = np.array([f.p_up for f in facts], dtype=float)
    crps = np.empty(n)
    pit = np.empty(n)
    by_size: dict[int, list[int]] = {}
    for i, f in enumerate(facts):
        by_size.setdefault(len(f.horizon_closes), []).append(i)
    for idx in by_size.values():
        ens = np.array([facts[i].horizon_closes for i in idx], dtype=float) / last[idx, None]
        obs = ratio[idx]
        crps[idx] = np.asarray(sr.crps_ensemble(obs, ens)) * 100.0
        below = (ens < obs[:, None]).sum(axis=1) + 0.5 * (ens == obs[:, None]).sum(axis=1)
        pit[idx] = below / ens.shape[1]
    spread = np.array([f.sigma * math.sqrt(f.horizon) for f in facts], dtype=float)
    mu = np.array([f.drift * f.horizon for f in facts], dtype=float)
    moving = spread > 0
    safe = np.where(moving, spread, 1.0)
    base_crps = np.where(moving, np.asarray(sr.crps_lognormal(ratio, 0.0, safe)) * 100.0, np.abs(ratio - 1.0) * 100.0)
    drift_crps = np.where(
        moving, np.asarray(sr.crps_lognormal(ratio, mu, safe)) * 100.0, np.abs(ratio - np.exp(mu)) * 100.0
    )
    drift_p = np.array(
        [
            _normal_cdf(m / s) if s > 0 else (1.0 if m > 0 else 0.0 if m < 0 else 0.5)
            for m, s in zip(mu, spread, strict=True)
        ]
    )
    brier = np.asarray(sr.brier_score(up, p_up))
    base_brier = np.asarray(sr.brier_score(up, np.full(n, 0.5)))
    drift_brier = np.asarray(sr.brier_score(up, drift_p))
    return [
        Scores(
            hit=direction_hit(f.predicted, f.last_close, float(actual[i])),
            brier=float(brier[i]),
            crps=float(crps[i]),
            pit=float(pit[i]),
            covered=f.p10 <= float(actual[i]) <= f.p90,
            abs_error_pct=abs_error_pct(f.predicted, float(actual[i]), f.last_close),
            baseline_brier=float(base_brier[i]),
            baseline_crps=float(base_crps[i]),
            drift_hit=bool((mu[i] > 0) == (actual[i] > last[i])),
            drift_brier=float(drift_brier[i]),
            drift_crps=float(drift_crps[i]),
            actual=float(actual[i]),
        )
        for i, f in enumerate(facts)
    ]
