"""Technical gate on real bars, checked against a plain-loop implementation written independently here."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pandas as pd
import pytest

from kronos_bot.config import TechnicalSettings
from kronos_bot.domain import TechnicalVerdict
from kronos_bot.gates.technical import ema, macd, required_bars, technical_gate, wilder_rsi
from kronos_bot.market import load_bars_csv
from tests.conftest import FIXTURES

COINS = ["BTC", "ETH", "SOL", "DOGE"]


@cache
def _bars(coin: str) -> pd.DataFrame:
    return load_bars_csv(FIXTURES / "bars" / f"{coin}_USD_1h.csv")


def closes(coin: str) -> list[float]:
    return _bars(coin)["close"].tolist()


# ----- the reference: textbook definitions, one value at a time -----


def loop_ema(xs: list[float], n: int) -> list[float | None]:
    """EMA seeded with the SMA of the first n values (TA-Lib / TradingView)."""
    out: list[float | None] = [None] * len(xs)
    if len(xs) < n:
        return out
    k = 2.0 / (n + 1)
    value = sum(xs[:n]) / n
    out[n - 1] = value
    for i in range(n, len(xs)):
        value = xs[i] * k + value * (1 - k)
        out[i] = value
    return out


def loop_rsi(xs: list[float], n: int) -> list[float | None]:
    """Wilder's RSI: SMA of the first n gains/losses, then (prev * (n - 1) + x) / n."""
    out: list[float | None] = [None] * len(xs)
    if len(xs) <= n:
        return out
    gains, losses = [], []
    for i in range(1, len(xs)):
        change = xs[i] - xs[i - 1]
        gains.append(change if change > 0 else 0.0)
        losses.append(-change if change < 0 else 0.0)
    avg_gain = sum(gains[:n]) / n
    avg_loss = sum(losses[:n]) / n

    def rsi(g: float, lo: float) -> float:
        if lo == 0:
            return 50.0 if g == 0 else 100.0
        return 100 - 100 / (1 + g / lo)

    out[n] = rsi(avg_gain, avg_loss)
    for i in range(n, len(gains)):
        avg_gain = (avg_gain * (n - 1) + gains[i]) / n
        avg_loss = (avg_loss * (n - 1) + losses[i]) / n
        out[i + 1] = rsi(avg_gain, avg_loss)
    return out


def loop_macd(xs: list[float], fast: int, slow: int, signal: int) -> tuple[list, list, list]:
    f, s = loop_ema(xs, fast), loop_ema(xs, slow)
    line = [a - b if a is not None and b is not None else None for a, b in zip(f, s, strict=True)]
    start = next(i for i, v in enumerate(line) if v is not None)
    sig_tail = loop_ema(list(line[start:]), signal)  # type: ignore[misc]
    sig = [None] * start + sig_tail
    hist = [a - b if a is not None and b is not None else None for a, b in zip(line, sig, strict=True)]
    return line, sig, hist


def assert_series_close(actual: pd.Series, expected: list[float | None]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual.tolist(), expected, strict=True):
        if want is None:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


# ----- indicators vs the reference -----


@pytest.mark.parametrize("coin", COINS)
def test_ema_matches_loop_on_real_bars(coin: str) -> None:
    xs = closes(coin)
    for n in (9, 12, 26, 50):
        assert_series_close(ema(pd.Series(xs), n), loop_ema(xs, n))


@pytest.mark.parametrize("coin", COINS)
def test_wilder_rsi_matches_loop_on_real_bars(coin: str) -> None:
    xs = closes(coin)
    for n in (7, 14, 21):
        assert_series_close(wilder_rsi(pd.Series(xs), n), loop_rsi(xs, n))


@pytest.mark.parametrize("coin", COINS)
def test_macd_matches_loop_on_real_bars(coin: str) -> None:
    xs = closes(coin)
    line, sig, hist = macd(pd.Series(xs), 12, 26, 9)
    ref_line, ref_sig, ref_hist = loop_macd(xs, 12, 26, 9)
    assert_series_close(line, ref_line)
    assert_series_close(sig, ref_sig)
    assert_series_close(hist, ref_hist)


def test_rsi_extremes() -> None:
    assert wilder_rsi(pd.Series(np.arange(1.0, 31.0)), 14).iloc[-1] == 100.0
    assert wilder_rsi(pd.Series(np.arange(31.0, 1.0, -1.0)), 14).iloc[-1] == 0.0
    assert wilder_rsi(pd.Series([5.0] * 30), 14).iloc[-1] == 50.0
    assert wilder_rsi(pd.Series([1.0] * 14), 14).isna().all()


# ----- the gate -----


def window(coin: str, end: int, count: int = 60) -> pd.DataFrame:
    return _bars(coin).iloc[end - count : end].copy()


@pytest.mark.parametrize("coin", COINS)
def test_gate_values_and_verdicts_match_reference_on_many_windows(coin: str) -> None:
    """On 60-bar windows ending anywhere in the 500 bars, every value and verdict matches the loop."""
    settings = TechnicalSettings()
    verdicts = set()
    for end in range(60, 501, 7):
        bars = window(coin, end)
        xs = bars["close"].tolist()
        result = technical_gate(bars, settings)
        rsi = loop_rsi(xs, 14)[-1]
        fast, slow = loop_ema(xs, 12)[-1], loop_ema(xs, 26)[-1]
        line, sig, hist = loop_macd(xs, 12, 26, 9)
        assert result.close == xs[-1]
        assert result.rsi == pytest.approx(rsi, rel=1e-10)
        assert result.ema_fast == pytest.approx(fast, rel=1e-10)
        assert result.ema_slow == pytest.approx(slow, rel=1e-10)
        assert result.macd == pytest.approx(line[-1], rel=1e-9, abs=1e-12)
        assert result.macd_signal == pytest.approx(sig[-1], rel=1e-9, abs=1e-12)
        assert result.macd_hist == pytest.approx(hist[-1], rel=1e-9, abs=1e-12)
        assert result.macd_hist_prev == pytest.approx(hist[-2], rel=1e-9, abs=1e-12)
        expected = {
            "rsi": 40 <= rsi <= 70,
            "ema": fast > slow and xs[-1] > slow,
            "macd": line[-1] > 0 and hist[-1] > hist[-2],
        }
        assert result.checks == expected
        want = TechnicalVerdict.PASS if all(expected.values()) else TechnicalVerdict.FAIL
        assert result.verdict == want
        verdicts.add(result.verdict)
    assert verdicts == {TechnicalVerdict.PASS, TechnicalVerdict.FAIL}  # the sample exercises both


def test_switched_off_checks_neither_pass_nor_fail() -> None:
    bars = window("BTC", 500)  # FAILs on ema and macd, rsi passes (see reason)
    full = technical_gate(bars, TechnicalSettings())
    assert full.verdict == TechnicalVerdict.FAIL and full.checks == {"rsi": True, "ema": False, "macd": False}
    only_rsi = technical_gate(bars, TechnicalSettings(check_ema=False, check_macd=False))
    assert only_rsi.verdict == TechnicalVerdict.PASS
    assert only_rsi.checks == {"rsi": True, "ema": None, "macd": None}
    # values are still reported for switched-off checks
    assert only_rsi.ema_fast == full.ema_fast and only_rsi.macd_hist == full.macd_hist
    no_macd = technical_gate(bars, TechnicalSettings(check_macd=False))
    assert no_macd.verdict == TechnicalVerdict.FAIL and "EMA" in no_macd.reason and "MACD" not in no_macd.reason
    nothing = technical_gate(bars, TechnicalSettings(check_rsi=False, check_ema=False, check_macd=False))
    assert nothing.verdict == TechnicalVerdict.PASS and nothing.reason == "all checks switched off"


def test_rsi_bounds_are_configurable() -> None:
    bars = window("BTC", 500)
    rsi = technical_gate(bars, TechnicalSettings()).rsi
    assert rsi is not None
    tight = TechnicalSettings(rsi_min=rsi + 0.01, rsi_max=rsi + 10, check_ema=False, check_macd=False)
    result = technical_gate(bars, tight)
    assert result.verdict == TechnicalVerdict.FAIL and result.checks["rsi"] is False
    assert f"RSI {rsi:.1f} outside" in result.reason


def test_too_few_bars_is_no_data_for_enabled_checks_only() -> None:
    settings = TechnicalSettings()
    assert required_bars(settings) == 35
    short = window("ETH", 500, count=34)
    result = technical_gate(short, settings)
    assert result.verdict == TechnicalVerdict.NO_DATA and "34 bars, need 35" in result.reason
    without_macd = technical_gate(short, TechnicalSettings(check_macd=False))
    assert without_macd.verdict in (TechnicalVerdict.PASS, TechnicalVerdict.FAIL)
    # 34 bars: the signal line exists at the last bar only, so there is no previous histogram value
    assert without_macd.macd_signal is not None and without_macd.macd_hist_prev is None


def test_synthetic_uptrend_passes() -> None:
    """A steady climb with regular pullbacks: RSI moderate, EMAs stacked, MACD positive and rising."""
    i = np.arange(80)
    close = 100 * (1 + 0.002 * i) + 1.2 * np.sin(i / 1.3)
    close[-1] = close[-2] + 1.0  # end on an up-tick so the histogram rises
    bars = pd.DataFrame(
        {"open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": np.ones(80)},
        index=pd.date_range("2024-01-01", periods=80, freq="1h", tz="UTC"),
    )
    result = technical_gate(bars, TechnicalSettings())
    assert result.verdict == TechnicalVerdict.PASS, result.reason
