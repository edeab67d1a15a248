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

Computed with numpy arrays and a float loop (pandas objects cost milliseconds per call, which a backtest
pays ~17,000 times in a 6-month, 4-symbol run); the tests check every value against a plain loop written
independently on real bars.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kronos_bot.config import TechnicalSettings
from kronos_bot.domain import TechnicalResult, TechnicalVerdict


def _smooth(values: np.ndarray, alpha: float, period: int) -> np.ndarray:
    """Seed with the mean of the first `period` values, then y = (1 - alpha) * y + alpha * x.

    Returns the len(values) - period + 1 smoothed values (from index period-1 on). A plain loop over
    Python floats: the windows are ~60 bars, where this is ~50x faster than building pandas objects.
    """
    acc = float(np.mean(values[:period]))
    keep = 1.0 - alpha
    out = [acc]
    for x in values[period:].tolist():
        acc = keep * acc + alpha * x
        out.append(acc)
    return np.asarray(out)


def ema_values(values: np.ndarray, period: int) -> np.ndarray:
    """SMA-seeded EMA of a float array (see module doc): NaN before the period-th non-NaN value and at NaNs.

    NaNs are skipped, not propagated (the MACD signal line is an EMA of a line that starts with NaNs).
    """
    x = np.asarray(values, dtype=float)
    out = np.full(x.shape, np.nan)
    where = np.flatnonzero(~np.isnan(x))
    if len(where) < period:
        return out
    out[where[period - 1 :]] = _smooth(x[where], 2.0 / (period + 1), period)
    return out


def rsi_values(close: np.ndarray, period: int) -> np.ndarray:
    """Wilder RSI of a float array (see module doc); NaN for the first `period` bars."""
    x = np.asarray(close, dtype=float)
    out = np.full(x.shape, np.nan)
    if len(x) <= period:
        return out
    change = np.diff(x)
    avg_gain = _smooth(np.clip(change, 0.0, None), 1.0 / period, period)
    avg_loss = _smooth(np.clip(-change, 0.0, None), 1.0 / period, period)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    out[period:] = np.where(avg_loss == 0.0, np.where(avg_gain == 0.0, 50.0, 100.0), rsi)
    return out


def macd_values(close: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(line, signal, histogram) arrays with SMA-seeded EMAs."""
    line = ema_values(close, fast) - ema_values(close, slow)
    signal_line = ema_values(line, signal)
    return line, signal_line, line - signal_line


def ema(values: pd.Series, period: int) -> pd.Series:
    """`ema_values` on a Series, keeping its index."""
    return pd.Series(ema_values(values.to_numpy(dtype=float), period), index=values.index)


def wilder_rsi(close: pd.Series, period: int) -> pd.Series:
    """`rsi_values` on a Series, keeping its index."""
    return pd.Series(rsi_values(close.to_numpy(dtype=float), period), index=close.index)


def macd(close: pd.Series, fast: int, slow: int, signal: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """`macd_values` on a Series, keeping its index."""
    arrays = macd_values(close.to_numpy(dtype=float), fast, slow, signal)
    return tuple(pd.Series(a, index=close.index) for a in arrays)  # type: ignore[return-value]


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
    close = bars["close"].to_numpy(dtype=float) if "close" in bars else np.empty(0)
    need = required_bars(settings)
    has_nan = bool(np.isnan(close).any())
    if len(close) < need or has_nan:
        why = "NaN in closes" if has_nan else f"{len(close)} bars, need {need}"
        return TechnicalResult(TechnicalVerdict.NO_DATA, reason=why, checks={"rsi": None, "ema": None, "macd": None})

    last_close = float(close[-1])
    rsi = _num(rsi_values(close, settings.rsi_period)[-1])
    ema_fast = _num(ema_values(close, settings.ema_fast)[-1])
    ema_slow = _num(ema_values(close, settings.ema_slow)[-1])
    line, signal_line, hist = macd_values(close, settings.macd_fast, settings.macd_slow, settings.macd_signal)
    macd_line, macd_signal = _num(line[-1]), _num(signal_line[-1])
    hist_last = _num(hist[-1])
    hist_prev = _num(hist[-2]) if len(hist) >= 2 else None

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
