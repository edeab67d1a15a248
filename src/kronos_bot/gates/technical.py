"""The technical gate: RSI in range, EMA trend, MACD momentum — a pure function of closes and config.

Conventions (the ones TA-Lib and TradingView use, so a person can check a decision against a chart):
- EMA(n): alpha = 2 / (n + 1), seeded with the simple mean of the first n values, undefined before
  that; then ema[t] = alpha * x[t] + (1 - alpha) * ema[t-1]. (pandas' `ewm(adjust=False)` alone would
  seed at the first value; with only 60 bars the seed still weighs ~1 % at the end, and an undefined
  warm-up makes "not enough bars" explicit instead of silently using a half-warmed average.)
- RSI(n), Wilder: average gain and loss seeded with the simple mean of the first n changes, then
  avg[t] = (avg[t-1] * (n - 1) + x[t]) / n, i.e. an EMA with alpha = 1 / n. RSI = 100 - 100 / (1 + RS);
  no losses -> 100, no gains -> 0, no movement at all -> 50.
- MACD(fast, slow, signal): line = EMA(fast) - EMA(slow) (defined from bar slow-1), signal = EMA(signal)
  of the line with the same SMA seeding, histogram = line - signal. "Rising" = hist[-1] > hist[-2].
  So the gate needs slow + signal bars, as the config check demands.

Computed with pandas `ewm(adjust=False)` on the seeded series; the tests check every value against a
plain loop written independently on real bars.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kronos_bot.config import TechnicalSettings
from kronos_bot.domain import TechnicalResult, TechnicalVerdict


def ema(values: pd.Series, period: int) -> pd.Series:
    """SMA-seeded EMA (see module doc); NaN before index period-1 and wherever the input starts with NaN."""
    values = values.astype(float)
    out = pd.Series(np.nan, index=values.index)
    valid = values.dropna()
    if len(valid) < period:
        return out
    seed = valid.iloc[:period].mean()
    seeded = pd.concat([pd.Series([seed], index=[valid.index[period - 1]]), valid.iloc[period:]])
    out.loc[seeded.index] = seeded.ewm(alpha=2.0 / (period + 1), adjust=False).mean().to_numpy()
    return out


def wilder_rsi(close: pd.Series, period: int) -> pd.Series:
    """RSI with Wilder smoothing, SMA-seeded (see module doc); NaN for the first `period` bars."""
    close = close.astype(float)
    out = pd.Series(np.nan, index=close.index)
    if len(close) <= period:
        return out
    change = close.diff().iloc[1:]
    gain, loss = change.clip(lower=0.0), (-change).clip(lower=0.0)

    def smooth(series: pd.Series) -> np.ndarray:
        seeded = pd.concat([pd.Series([series.iloc[:period].mean()]), series.iloc[period:]], ignore_index=True)
        return seeded.ewm(alpha=1.0 / period, adjust=False).mean().to_numpy()

    avg_gain, avg_loss = smooth(gain), smooth(loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    rsi = np.where(avg_loss == 0.0, np.where(avg_gain == 0.0, 50.0, 100.0), rsi)
    out.iloc[period:] = rsi
    return out


def macd(close: pd.Series, fast: int, slow: int, signal: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(line, signal, histogram) with SMA-seeded EMAs."""
    line = ema(close, fast) - ema(close, slow)
    signal_line = ema(line, signal)
    return line, signal_line, line - signal_line


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def required_bars(settings: TechnicalSettings) -> int:
    """Bars needed for every enabled check (RSI: period + 1; EMA: slow; MACD: slow + signal)."""
    needs = [1]
    if settings.check_rsi:
        needs.append(settings.rsi_period + 1)
    if settings.check_ema:
        needs.append(settings.ema_slow)
    if settings.check_macd:
        needs.append(settings.macd_slow + settings.macd_signal)
    return max(needs)


def technical_gate(bars: pd.DataFrame, settings: TechnicalSettings) -> TechnicalResult:
    """PASS when every enabled check passes; FAIL otherwise; NO_DATA when the bars are too few.

    `checks` maps rsi / ema / macd -> passed (None = switched off); every indicator value is reported
    even for switched-off checks when the bars allow computing it. All checks off -> PASS (vacuous).
    """
    close = bars["close"].astype(float) if "close" in bars else pd.Series(dtype=float)
    need = required_bars(settings)
    if len(close) < need or close.isna().any():
        why = "NaN in closes" if close.isna().any() else f"{len(close)} bars, need {need}"
        return TechnicalResult(TechnicalVerdict.NO_DATA, reason=why,
                               checks={"rsi": None, "ema": None, "macd": None})

    last_close = float(close.iloc[-1])
    rsi = _num(wilder_rsi(close, settings.rsi_period).iloc[-1])
    ema_fast = _num(ema(close, settings.ema_fast).iloc[-1])
    ema_slow = _num(ema(close, settings.ema_slow).iloc[-1])
    line, signal_line, hist = macd(close, settings.macd_fast, settings.macd_slow, settings.macd_signal)
    macd_line, macd_signal = _num(line.iloc[-1]), _num(signal_line.iloc[-1])
    hist_last = _num(hist.iloc[-1])
    hist_prev = _num(hist.iloc[-2]) if len(hist) >= 2 else None

    checks: dict[str, bool | None] = {"rsi": None, "ema": None, "macd": None}
    failures: list[str] = []
    if settings.check_rsi:
        assert rsi is not None
        checks["rsi"] = settings.rsi_min <= rsi <= settings.rsi_max
        if not checks["rsi"]:
            failures.append(f"RSI {rsi:.1f} outside [{settings.rsi_min:g}, {settings.rsi_max:g}]")
    if settings.check_ema:
        assert ema_fast is not None and ema_slow is not None
        trend_up = ema_fast > ema_slow
        above = last_close > ema_slow
        checks["ema"] = trend_up and above
        if not trend_up:
            failures.append(f"EMA{settings.ema_fast} {ema_fast:.6g} <= EMA{settings.ema_slow} {ema_slow:.6g}")
        if not above:
            failures.append(f"close {last_close:.6g} <= EMA{settings.ema_slow} {ema_slow:.6g}")
    if settings.check_macd:
        assert macd_line is not None and hist_last is not None and hist_prev is not None
        positive = macd_line > 0
        rising = hist_last > hist_prev
        checks["macd"] = positive and rising
        if not positive:
            failures.append(f"MACD {macd_line:.6g} <= 0")
        if not rising:
            failures.append(f"MACD histogram not rising ({hist_prev:.6g} -> {hist_last:.6g})")

    enabled = [name for name, passed in checks.items() if passed is not None]
    verdict = TechnicalVerdict.FAIL if failures else TechnicalVerdict.PASS
    if failures:
        reason = "; ".join(failures)
    elif enabled:
        reason = f"all enabled checks passed ({', '.join(enabled)})"
    else:
        reason = "all checks switched off"
    return TechnicalResult(
        verdict=verdict,
        close=last_close,
        rsi=rsi,
        ema_fast=ema_fast,
        ema_slow=ema_slow,
        macd=macd_line,
        macd_signal=macd_signal,
        macd_hist=hist_last,
        macd_hist_prev=hist_prev,
        checks=checks,
        reason=reason,
    )
