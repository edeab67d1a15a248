"""The Kronos gate: a pure function of one forecast, the last close and the config.

Two methods (`gates.kronos.method`); h = `horizon` (1-based predicted bar), L = last close.

magnitude (the seed bot's rule; works with one sampled path):
    predicted = close of the horizon candle (the mean over paths when samples > 1)
    pct = (predicted - L) / L                         (a fraction: 0.01 = 1 %)
    UP if pct > +threshold_percent/100, DOWN if pct < -threshold_percent/100, else FLAT
    confidence = min(|pct| x 50, 1) for UP/DOWN      (a 2 % move is full confidence)
               = 1 - |pct| x 100 for FLAT, clamped to [0, 1] (1 at no move; 0.7 at the 0.3 % edge)

ensemble (needs many sampled paths):
    t = ensemble_threshold_percent / 100
    P(up)   = share of paths whose horizon close > L x (1 + t)
    P(down) = share of paths whose horizon close < L x (1 - t)
    UP if P(up) >= min_confidence, DOWN if P(down) >= min_confidence (the larger wins if both, a tie
    is FLAT), else FLAT; confidence = the share of paths supporting the signal: P(up) for UP, P(down)
    for DOWN, and 1 - P(up) - P(down) (the paths ending inside the band) for FLAT. With t = 0 the band
    is empty, so a FLAT there has confidence ~0: the paths disagree rather than agree on "flat".

Both: actionable iff confidence >= min_confidence. The result always carries the horizon's p10/p50/p90
and, when paths are present, P(up)/P(down) by the ensemble definition, whichever method decides.
"""

from __future__ import annotations

import math

from kronos_bot.config import KronosGateSettings
from kronos_bot.domain import KronosResult, KronosSignal
from kronos_bot.forecast_types import SeriesForecast


def unavailable(reason: str, method: str = "", last_close: float | None = None) -> KronosResult:
    return KronosResult(KronosSignal.UNAVAILABLE, method=method, last_close=last_close, reason=reason)


def _shares(path_closes: list[list[float]], index: int, last_close: float, t: float) -> tuple[float, float] | None:
    closes = [path[index] for path in path_closes if len(path) > index and math.isfinite(path[index])]
    if not closes:
        return None
    up = sum(1 for c in closes if c > last_close * (1 + t)) / len(closes)
    down = sum(1 for c in closes if c < last_close * (1 - t)) / len(closes)
    return up, down


def kronos_gate(
    forecast: SeriesForecast | None,
    last_close: float | None,
    settings: KronosGateSettings,
    unavailable_reason: str | None = None,
) -> KronosResult:
    """UP / DOWN / FLAT with a confidence, or UNAVAILABLE with the reason (see module doc)."""
    method = settings.method
    if forecast is None:
        return unavailable(unavailable_reason or "no forecast", method, last_close)
    if last_close is None or not math.isfinite(last_close) or last_close <= 0:
        return unavailable(f"invalid last close {last_close!r}", method, last_close)
    index = settings.horizon - 1
    if len(forecast.candles) <= index:
        return unavailable(
            f"forecast has {len(forecast.candles)} candle(s), horizon is {settings.horizon}", method, last_close
        )
    predicted = float(forecast.candles[index].close)
    if not math.isfinite(predicted) or predicted <= 0:
        return unavailable(f"invalid predicted close {predicted!r}", method, last_close)
    pct = (predicted - last_close) / last_close
    quantiles = {name: float(values[index]) for name, values in forecast.close_quantiles.items() if len(values) > index}
    shares = _shares(forecast.path_closes, index, last_close, settings.ensemble_threshold_percent / 100.0)
    p_up, p_down = shares if shares is not None else (None, None)

    if method == "magnitude":
        threshold = settings.threshold_percent / 100.0
        if pct > threshold:
            signal, confidence = KronosSignal.UP, min(abs(pct) * 50.0, 1.0)
        elif pct < -threshold:
            signal, confidence = KronosSignal.DOWN, min(abs(pct) * 50.0, 1.0)
        else:
            signal, confidence = KronosSignal.FLAT, min(max(1.0 - abs(pct) * 100.0, 0.0), 1.0)
        rule = f"pct {pct * 100:+.3f}% vs +/-{settings.threshold_percent:g}%"
    else:
        if p_up is None or p_down is None:
            return unavailable("ensemble method needs sampled paths; the forecast has none", method, last_close)
        minimum = settings.min_confidence
        if p_up >= minimum and p_up > p_down:
            signal, confidence = KronosSignal.UP, p_up
        elif p_down >= minimum and p_down > p_up:
            signal, confidence = KronosSignal.DOWN, p_down
        else:
            signal, confidence = KronosSignal.FLAT, max(1.0 - p_up - p_down, 0.0)
        rule = (
            f"P(up) {p_up:.2f}, P(down) {p_down:.2f} over {len(forecast.path_closes)} path(s), "
            f"band +/-{settings.ensemble_threshold_percent:g}%"
        )
    actionable = confidence >= settings.min_confidence
    return KronosResult(
        signal=signal,
        confidence=confidence,
        actionable=actionable,
        method=method,
        last_close=last_close,
        pred_close=predicted,
        pct=pct,
        p_up=p_up,
        p_down=p_down,
        quantiles=quantiles,
        reason=f"{signal.value} at bar +{settings.horizon}: {rule}; confidence {confidence:.2f} "
        f"{'>=' if actionable else '<'} {settings.min_confidence:g}",
    )
