"""Forecast quality scores and naive baselines for `evaluate`. Pure functions of plain numbers.

The per-forecast numbers come from `kronos_bot.skill.scores`, the module the live trader scores with;
this module groups them by forecaster, regime and symbol.

Definitions (L = last close of the context, A = actual close at the horizon, P = predicted close,
p = predicted P(up), y = 1 if A > L else 0):
- direction hit: (P > L) == (A > L). A forecast of "no change" (P = L) therefore predicts "not up";
- Brier score: mean of (p - y)^2 (0 is perfect; always saying 0.5 scores 0.25);
- reliability: forecasts binned by p into equal-width bins; per bin the mean p and the observed
  frequency of y = 1 (a calibrated forecaster lies on the diagonal);
- MAE: mean |P - A| / L, in percent of the last close (comparable across coins).
Baselines: no-change (P = L, p = 0.5: it has no view on the direction) and drift (P = L x exp(H x m),
m = mean of the last `window` log returns of the context; p = 1 if m > 0, 0 if m < 0, else 0.5).
Regime: Kaufman's efficiency ratio of the context closes, ER = |close[-1] - close[0]| / sum |close[i] -
close[i-1]| (1 = a straight line, ~0 = back and forth); "trending" when ER >= the threshold, else "choppy".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kronos_bot.skill.scores import abs_error_pct, brier_term, direction_hit

KRONOS = "kronos"
NO_CHANGE = "no_change"
DRIFT = "drift"
FORECASTERS = (KRONOS, NO_CHANGE, DRIFT)
TRENDING, CHOPPY = "trending", "choppy"


@dataclass(frozen=True)
class Outcome:
    """One forecast origin of one symbol, with every forecaster's (predicted close, P(up))."""

    symbol: str
    time: datetime
    regime: str
    last_close: float
    actual: float
    predictions: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.actual > self.last_close


@dataclass(frozen=True)
class Score:
    n: int
    hit_rate: float | None
    brier: float | None
    mae_pct: float | None


def efficiency_ratio(closes: Sequence[float]) -> float:
    path = sum(abs(b - a) for a, b in itertools.pairwise(closes))
    return abs(closes[-1] - closes[0]) / path if path > 0 else 0.0


def regime(closes: Sequence[float], threshold: float) -> str:
    return TRENDING if efficiency_ratio(closes) >= threshold else CHOPPY


def drift_forecast(closes: Sequence[float], horizon: int, window: int) -> tuple[float, float]:
    """(predicted close, P(up)) of the drift baseline."""
    recent = closes[-(window + 1) :]
    logs = [math.log(b / a) for a, b in itertools.pairwise(recent) if a > 0 and b > 0]
    m = sum(logs) / len(logs) if logs else 0.0
    p_up = 1.0 if m > 0 else 0.0 if m < 0 else 0.5
    return closes[-1] * math.exp(horizon * m), p_up


def no_change_forecast(last_close: float) -> tuple[float, float]:
    return last_close, 0.5


def score(outcomes: Iterable[Outcome], name: str) -> Score:
    rows = [(o, o.predictions[name]) for o in outcomes if name in o.predictions]
    if not rows:
        return Score(0, None, None, None)
    n = len(rows)
    hits = sum(1 for o, (pred, _) in rows if direction_hit(pred, o.last_close, o.actual))
    brier = sum(brier_term(p, o.up) for o, (_, p) in rows) / n
    mae = sum(abs_error_pct(pred, o.actual, o.last_close) for o, (pred, _) in rows) / n
    return Score(n, hits / n, brier, mae)


def reliability(outcomes: Iterable[Outcome], name: str, bins: int = 10) -> list[dict[str, float | int | None]]:
    """Equal-width bins of P(up) over [0, 1] (the last bin includes 1.0)."""
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for o in outcomes:
        if name in o.predictions:
            p = o.predictions[name][1]
            groups[min(int(p * bins), bins - 1)].append((p, o.up))
    out: list[dict[str, float | int | None]] = []
    for i, group in enumerate(groups):
        n = len(group)
        out.append(
            {
                "lo": i / bins,
                "hi": (i + 1) / bins,
                "count": n,
                "mean_p": sum(p for p, _ in group) / n if n else None,
                "frequency": sum(1 for _, up in group if up) / n if n else None,
            }
        )
    return out


def score_table(outcomes: Sequence[Outcome], names: Sequence[str] = FORECASTERS) -> dict[str, dict[str, Score]]:
    """Scores of every forecaster overall, per regime and per symbol: group -> name -> Score."""
    groups: dict[str, list[Outcome]] = {"all": list(outcomes)}
    for o in outcomes:
        groups.setdefault(o.regime, []).append(o)
    for o in outcomes:
        groups.setdefault(o.symbol, []).append(o)
    return {g: {name: score(rows, name) for name in names} for g, rows in groups.items()}
