"""Kronos gate (both methods) on hand-made forecasts, and the forecast cache / batching."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kronos_bot.config import KronosGateSettings
from kronos_bot.domain import KronosSignal
from kronos_bot.forecast_types import (
    Candle,
    ForecasterUnavailable,
    ForecastInputError,
    SamplingParams,
    SeriesForecast,
    SeriesInput,
)
from kronos_bot.gates import ForecastCache, kronos_gate, kronos_gates, model_fingerprint, sampling_params, series_input

T0 = datetime(2024, 12, 31, 23, tzinfo=UTC)
LAST = 100.0


def forecast(
    closes: Sequence[float],
    paths: Sequence[Sequence[float]] | None = None,
    last_close: float = LAST,
    series_id: str = "BTC/USD",
) -> SeriesForecast:
    """Mean candles with the given closes; paths default to the mean itself (one path)."""
    candles = [Candle(T0 + timedelta(hours=i), c, c, c, c, 1.0, c) for i, c in enumerate(closes)]
    path_closes = [list(p) for p in paths] if paths is not None else [list(closes)]
    arr = np.array(path_closes)
    quantiles = {q: np.quantile(arr, p, axis=0).tolist() for q, p in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))}
    p_up = float(np.mean(arr[:, -1] > last_close))
    return SeriesForecast(series_id, last_close, candles, path_closes, p_up, quantiles)


def magnitude(**kw: object) -> KronosGateSettings:
    return KronosGateSettings(method="magnitude", **kw)  # type: ignore[arg-type]


def ensemble(**kw: object) -> KronosGateSettings:
    return KronosGateSettings(method="ensemble", samples=10, **kw)  # type: ignore[arg-type]


# ----- magnitude -----


@pytest.mark.parametrize(
    ("horizon_close", "signal", "confidence", "actionable"),
    [
        (101.2, KronosSignal.UP, 0.6, True),  # +1.2 % -> 0.012 x 50
        (101.0, KronosSignal.UP, 0.5, False),  # +1.0 % -> 0.5 < 0.55
        (103.0, KronosSignal.UP, 1.0, True),  # +3 % -> capped at 1
        (100.31, KronosSignal.UP, 0.155, False),  # just above the threshold
        (100.3, KronosSignal.FLAT, 0.7, True),  # exactly +0.3 % is not "above": FLAT, 1 - 0.3
        (100.1, KronosSignal.FLAT, 0.9, True),
        (100.0, KronosSignal.FLAT, 1.0, True),
        (99.75, KronosSignal.FLAT, 0.75, True),
        (98.8, KronosSignal.DOWN, 0.6, True),
        (99.5, KronosSignal.DOWN, 0.25, False),
    ],
)
def test_magnitude(horizon_close: float, signal: KronosSignal, confidence: float, actionable: bool) -> None:
    result = kronos_gate(forecast([100.5, 100.7, 100.9, horizon_close]), LAST, magnitude())
    assert result.signal == signal
    assert result.confidence == pytest.approx(confidence)
    assert result.actionable is actionable
    assert result.pred_close == horizon_close and result.last_close == LAST
    assert result.pct == pytest.approx((horizon_close - LAST) / LAST)
    assert result.method == "magnitude"


def test_magnitude_uses_the_configured_horizon_candle() -> None:
    f = forecast([102.0, 100.0, 99.0, 100.1])
    assert kronos_gate(f, LAST, magnitude(horizon=1)).signal == KronosSignal.UP
    assert kronos_gate(f, LAST, magnitude(horizon=3)).signal == KronosSignal.DOWN
    assert kronos_gate(f, LAST, magnitude(horizon=4)).signal == KronosSignal.FLAT


def test_magnitude_threshold_and_flat_confidence_clamp() -> None:
    f = forecast([100.0, 100.0, 100.0, 101.5])
    wide = kronos_gate(f, LAST, magnitude(threshold_percent=2.0))
    assert wide.signal == KronosSignal.FLAT and wide.confidence == 0.0  # 1 - 1.5 clamped
    assert kronos_gate(f, LAST, magnitude(min_confidence=0.8)).actionable is False  # UP 0.75


def test_result_carries_horizon_quantiles_and_path_shares() -> None:
    paths = [[100, 100, 100, 100 + k] for k in range(-3, 7)]  # horizon closes 97..106
    f = forecast([100, 100, 100, 101.5], paths=paths)
    result = kronos_gate(f, LAST, magnitude())
    assert set(result.quantiles) == {"p10", "p50", "p90"}
    assert result.quantiles["p50"] == pytest.approx(np.quantile(np.arange(97, 107), 0.5))
    assert result.p_up == pytest.approx(0.6) and result.p_down == pytest.approx(0.3)


# ----- ensemble -----


def horizon_paths(ends: Sequence[float]) -> list[list[float]]:
    return [[LAST, LAST, LAST, e] for e in ends]


def test_ensemble_up_down_flat() -> None:
    up = forecast([100, 100, 100, 101], paths=horizon_paths([101] * 7 + [99] * 3))
    result = kronos_gate(up, LAST, ensemble())
    assert result.signal == KronosSignal.UP and result.confidence == pytest.approx(0.7) and result.actionable
    assert result.p_up == pytest.approx(0.7) and result.p_down == pytest.approx(0.3)

    down = forecast([100, 100, 100, 99], paths=horizon_paths([99] * 6 + [101] * 4))
    result = kronos_gate(down, LAST, ensemble())
    assert result.signal == KronosSignal.DOWN and result.confidence == pytest.approx(0.6) and result.actionable

    split = forecast([100, 100, 100, 100], paths=horizon_paths([101] * 5 + [99] * 5))
    result = kronos_gate(split, LAST, ensemble())
    assert result.signal == KronosSignal.FLAT and result.confidence == pytest.approx(0.0)
    assert not result.actionable


def test_ensemble_min_confidence_boundary_is_inclusive() -> None:
    f = forecast([100, 100, 100, 101], paths=horizon_paths([101] * 11 + [99] * 9))
    assert kronos_gate(f, LAST, ensemble(min_confidence=0.55)).signal == KronosSignal.UP
    assert kronos_gate(f, LAST, ensemble(min_confidence=0.56)).signal == KronosSignal.FLAT


def test_ensemble_threshold_band() -> None:
    ends = [100.2] * 6 + [100.6] * 2 + [99.0] * 2  # 0.2 % moves fall inside a 0.3 % band
    f = forecast([100, 100, 100, 100.3], paths=horizon_paths(ends))
    no_band = kronos_gate(f, LAST, ensemble())
    assert no_band.signal == KronosSignal.UP and no_band.p_up == pytest.approx(0.8)
    banded = kronos_gate(f, LAST, ensemble(ensemble_threshold_percent=0.3))
    assert banded.p_up == pytest.approx(0.2) and banded.p_down == pytest.approx(0.2)
    assert banded.signal == KronosSignal.FLAT and banded.confidence == pytest.approx(0.6) and banded.actionable


def test_ensemble_without_paths_is_unavailable() -> None:
    f = SeriesForecast("BTC/USD", LAST, forecast([100, 100, 100, 101]).candles, [], 0.0, {})
    result = kronos_gate(f, LAST, ensemble())
    assert result.signal == KronosSignal.UNAVAILABLE and "paths" in result.reason


# ----- unavailable -----


def test_unavailable_cases() -> None:
    none = kronos_gate(None, LAST, magnitude(), unavailable_reason="forecaster unavailable: connection refused")
    assert none.signal == KronosSignal.UNAVAILABLE and not none.actionable
    assert none.reason == "forecaster unavailable: connection refused"
    short = kronos_gate(forecast([101.0, 102.0]), LAST, magnitude())
    assert short.signal == KronosSignal.UNAVAILABLE and "horizon is 4" in short.reason
    assert kronos_gate(forecast([1, 1, 1, 1.0]), 0.0, magnitude()).signal == KronosSignal.UNAVAILABLE
    assert kronos_gate(forecast([1, 1, 1, float("nan")]), LAST, magnitude()).signal == KronosSignal.UNAVAILABLE


# ----- forecast cache and batching -----


class FakeForecaster:
    """Predicts +1 % per step for every series; records every batch it is asked for."""

    def __init__(self, info: dict[str, object] | None = None) -> None:
        self.info = info or {"model": "NeoQuasar/Kronos-small", "revision": "abc", "sha256": "00ff"}
        self.calls: list[tuple[list[str], SamplingParams]] = []
        self.fail_with: Exception | None = None
        self.reject: str | None = None

    def model_info(self) -> dict[str, object]:
        if isinstance(self.fail_with, ForecasterUnavailable):
            raise self.fail_with
        return self.info

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        self.calls.append(([s.id for s in series], params))
        if self.fail_with is not None:
            raise self.fail_with
        if self.reject is not None and any(s.id == self.reject for s in series):
            raise ForecastInputError(self.reject, "high < low at bar 3")
        out = []
        for s in series:
            last = s.close[-1]
            closes = [last * 1.01 ** (k + 1) for k in range(params.pred_len)]
            out.append(forecast(closes, last_close=last, series_id=s.id))
        return out


def bars(end: datetime, count: int = 60, price: float = 100.0) -> pd.DataFrame:
    idx = pd.date_range(end=end, periods=count, freq="1h", tz="UTC", name="timestamp")
    close = price + np.arange(count) * 0.1
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": np.ones(count)}, index=idx
    )


def cycle_bars(end: datetime) -> dict[str, pd.DataFrame]:
    return {"BTC/USD": bars(end, price=90000), "ETH/USD": bars(end, price=3300), "SOL/USD": bars(end, price=190)}


def test_series_input_from_bars() -> None:
    df = bars(T0)
    s = series_input("BTC/USD", df)
    assert s.id == "BTC/USD" and len(s.timestamps) == len(s.close) == 60
    assert s.timestamps[-1] == T0 and s.timestamps[-1].tzinfo is not None
    assert s.volume == [1.0] * 60 and isinstance(s.close[0], float)


def test_sampling_params_from_settings() -> None:
    params = sampling_params(KronosGateSettings(samples=16, temperature=0.8, top_p=0.95, seed=7), max_context=256)
    assert params == SamplingParams(
        pred_len=4, samples=16, temperature=0.8, top_p=0.95, top_k=0, max_context=256, seed=7
    )


def test_one_batch_then_cache_hits_for_the_same_closed_bars() -> None:
    forecaster, cache, settings = FakeForecaster(), ForecastCache(), magnitude()
    first = kronos_gates(cycle_bars(T0), forecaster, settings, cache)
    assert len(forecaster.calls) == 1 and forecaster.calls[0][0] == ["BTC/USD", "ETH/USD", "SOL/USD"]
    assert all(r.signal == KronosSignal.UP and r.actionable for r in first.values())  # +4.06 % -> conf 1
    # the :15, :30, :45 cycles see the same closed bars
    for _ in range(3):
        again = kronos_gates(cycle_bars(T0), forecaster, settings, cache)
        assert again == first
    assert len(forecaster.calls) == 1 and cache.hits == 9 and len(cache) == 3


def test_new_bar_for_one_symbol_forecasts_only_that_symbol() -> None:
    forecaster, cache, settings = FakeForecaster(), ForecastCache(), magnitude()
    kronos_gates(cycle_bars(T0), forecaster, settings, cache)
    next_cycle = cycle_bars(T0)
    next_cycle["SOL/USD"] = bars(T0 + timedelta(hours=1), price=190)
    kronos_gates(next_cycle, forecaster, settings, cache)
    assert [c[0] for c in forecaster.calls] == [["BTC/USD", "ETH/USD", "SOL/USD"], ["SOL/USD"]]
    assert len(cache) == 3  # only the newest entry per symbol is kept


def test_new_sampling_settings_or_model_miss_the_cache() -> None:
    forecaster, cache = FakeForecaster(), ForecastCache()
    kronos_gates(cycle_bars(T0), forecaster, magnitude(), cache)
    kronos_gates(cycle_bars(T0), forecaster, magnitude(temperature=0.7), cache)
    assert len(forecaster.calls) == 2 and forecaster.calls[1][1].temperature == 0.7
    # a threshold is not a sampling setting: same forecast reused
    kronos_gates(cycle_bars(T0), forecaster, magnitude(temperature=0.7, threshold_percent=1.0), cache)
    assert len(forecaster.calls) == 2
    forecaster.info = {**forecaster.info, "revision": "def"}
    kronos_gates(cycle_bars(T0), forecaster, magnitude(temperature=0.7), cache)
    assert len(forecaster.calls) == 3
    # context length is part of the key too
    shorter = {s: df.iloc[-40:] for s, df in cycle_bars(T0).items()}
    kronos_gates(shorter, forecaster, magnitude(temperature=0.7), cache)
    assert len(forecaster.calls) == 4


def test_model_fingerprint_ignores_volatile_process_facts() -> None:
    base = {"model": "m", "revision": "r"}
    assert model_fingerprint(base) == model_fingerprint({**base, "uptime_seconds": 12.5})
    assert model_fingerprint(base) != model_fingerprint({**base, "revision": "s"})


def test_unavailable_forecaster_gives_unavailable_results() -> None:
    cache = ForecastCache()
    down = FakeForecaster()
    down.fail_with = ForecasterUnavailable("connection refused (socket /run/kronos-bot/forecaster.sock)")
    results = kronos_gates(cycle_bars(T0), down, magnitude(), cache)
    for result in results.values():
        assert result.signal == KronosSignal.UNAVAILABLE and not result.actionable
        assert "connection refused" in result.reason and result.last_close is not None
    none = kronos_gates(cycle_bars(T0), None, magnitude(), cache)
    assert all(r.reason == "no forecaster configured" for r in none.values())


def test_cached_forecasts_survive_a_forecaster_outage_within_the_hour() -> None:
    forecaster, cache = FakeForecaster(), ForecastCache()
    kronos_gates(cycle_bars(T0), forecaster, magnitude(), cache)
    forecaster.fail_with = ForecasterUnavailable("service restarting")
    again = kronos_gates(cycle_bars(T0), forecaster, magnitude(), cache)
    assert all(r.signal == KronosSignal.UP for r in again.values())
    later = kronos_gates(cycle_bars(T0 + timedelta(hours=1)), forecaster, magnitude(), cache)
    assert all(r.signal == KronosSignal.UNAVAILABLE and "service restarting" in r.reason for r in later.values())


def test_forecast_error_during_batch_is_unavailable() -> None:
    forecaster, cache = FakeForecaster(), ForecastCache()
    forecaster.forecast = lambda series, params: (_ for _ in ()).throw(ForecasterUnavailable("timeout after 30 s"))
    results = kronos_gates(cycle_bars(T0), forecaster, magnitude(), cache)
    assert all("timeout after 30 s" in r.reason for r in results.values())
    assert len(cache) == 0


def test_rejected_series_does_not_block_the_others() -> None:
    forecaster, cache = FakeForecaster(), ForecastCache()
    forecaster.reject = "ETH/USD"
    results = kronos_gates(cycle_bars(T0), forecaster, magnitude(), cache)
    assert results["ETH/USD"].signal == KronosSignal.UNAVAILABLE and "high < low" in results["ETH/USD"].reason
    assert results["BTC/USD"].signal == KronosSignal.UP and results["SOL/USD"].signal == KronosSignal.UP
    assert [c[0] for c in forecaster.calls] == [["BTC/USD", "ETH/USD", "SOL/USD"], ["BTC/USD", "SOL/USD"]]
