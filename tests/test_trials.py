"""The optimizer's trial engine: a trial is the backtest with the same settings, without recomputing gates."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import BarStore, load_csv_dir
from kronos_bot.backtest.memo import BarsMemo
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.runner import BacktestRun, run_backtest
from kronos_bot.backtest.summary import build_summary
from kronos_bot.backtest.trials import TrialData, TrialResult, prepare_trials, run_trial, technical_verdict
from kronos_bot.config import Settings, TechnicalSettings
from kronos_bot.gates.technical import technical_gate
from tests.backtest_support import FIXTURE_BARS, CountingForecaster, settings
from tests.forecaster_support import tiny_model

HOUR = timedelta(hours=1)
SYMBOLS = ("BTC/USD", "ETH/USD")
PERIOD = Period(datetime(2024, 12, 14, tzinfo=UTC), datetime(2024, 12, 17, tzinfo=UTC))  # 72 h
KRONOS = {"samples": 8, "seed": 7}
# Thresholds loose enough that the tiny model's forecasts trade in this short period.
LOOSE = {"threshold_percent": 0.05, "min_confidence": 0.02}


def store() -> BarStore:
    return BarStore(load_csv_dir(FIXTURE_BARS, SYMBOLS))


def make(**sections: Any) -> Settings:
    gates = sections.pop("gates", {})
    kronos = {**KRONOS, **LOOSE, **gates.pop("kronos", {})}
    return settings(SYMBOLS, gates={**gates, "kronos": kronos}, **sections)


@lru_cache(maxsize=1)
def cache_dir() -> Path:
    """One warm forecast cache for the module (the tiny model runs once)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="trials-cache-"))


@lru_cache(maxsize=1)
def prepared() -> TrialData:
    with CacheStore.in_dir(cache_dir()) as cache:
        return prepare_trials(make(), store(), PERIOD, forecaster=tiny_model(), cache=cache)


def backtest(s: Settings, period: Period = PERIOD) -> BacktestRun:
    prepared()  # the cache is warm: the backtest reads the same forecasts
    counting = CountingForecaster(tiny_model())
    with CacheStore.in_dir(cache_dir()) as cache:
        run = run_backtest(s, store(), period, forecaster=counting, cache=cache)
    assert counting.calls == 0
    return run


def assert_same(trial: TrialResult, run: BacktestRun) -> None:
    summary = build_summary(run)
    closed = [p for p in run.positions if not p.is_open]
    assert trial.trades == len(closed)
    assert [(t, round(v, 6)) for t, v in trial.equity] == [(p.time, round(float(p.equity), 6)) for p in run.equity]
    assert trial.total_return == pytest.approx(summary["period_return"], abs=1e-6)
    assert trial.max_drawdown == pytest.approx(summary["max_drawdown"], abs=1e-6)
    assert trial.fees_usd == pytest.approx(float(summary["fees_usd"]), abs=0.01)
    assert trial.buy_and_hold_return == pytest.approx(summary["buy_and_hold"]["equal_weight"], abs=1e-6)
    if summary["sharpe_annualized"] is None:
        assert trial.sharpe is None
    else:
        assert trial.sharpe == pytest.approx(summary["sharpe_annualized"], abs=1e-3)


CHANGES: list[dict[str, Any]] = [
    {},
    {"gates": {"kronos": {"min_confidence": 0.3, "threshold_percent": 0.2}}},
    {"gates": {"technical": {"rsi_min": 20.0, "rsi_max": 90.0}}, "engine": {"require_technical_for_kronos_only": True}},
    {"exits": {"trail_percent": 0.5, "trail_activation_percent": 0.2, "stop_loss_percent": 1.0}},
    {"engine": {"tiers": {"kronos_only": 0.3}}, "risk": {"cooldown_minutes": 0, "max_open_positions": 1}},
    {"gates": {"kronos": {"method": "ensemble", "min_confidence": 0.6}}},
    # Indicator periods: the slow path, technical_gate itself on rebuilt windows.
    {"gates": {"technical": {"rsi_period": 9, "ema_fast": 8}}, "engine": {"require_technical_for_kronos_only": True}},
    {"sizing": {"fixed_usd": 400.0}, "broker": {"sim": {"fee_percent": 0.1, "slippage_bps": 2.0}}},
    # Max holding time: exits whose tick skips the HWM raise (see bar_exits), carried in memory before.
    {"exits": {"max_hold_hours": 5, "trail_percent": 3.0}},
    {"exits": {"backstop": {"enabled": False}, "trail_percent": 1.0}},
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: ",".join(c) or "as_prepared")
def test_a_trial_equals_the_backtest_with_the_same_settings(change: dict[str, Any]) -> None:
    s = make(**change)
    trial = run_trial(prepared(), s, PERIOD.start, PERIOD.end)
    run = backtest(s)
    assert_same(trial, run)
    if not change:
        assert trial.trades > 0  # the comparison is not vacuous


def test_the_changed_parameters_change_the_trades() -> None:
    trades = {run_trial(prepared(), make(**c), PERIOD.start, PERIOD.end).trades for c in CHANGES}
    assert len(trades) > 2


def test_a_sub_span_equals_a_backtest_of_that_span() -> None:
    start, end = PERIOD.start + 20 * HOUR, PERIOD.start + 60 * HOUR
    s = make(exits={"trail_percent": 0.8})
    assert_same(run_trial(prepared(), s, start, end), backtest(s, Period(start, end)))


@pytest.mark.parametrize(
    "change",
    [
        {"gates": {"kronos": {"samples": 16}}},
        {"gates": {"kronos": {"seed": 8}}},
        {"gates": {"kronos": {"horizon": 2}}},
        {"gates": {"kronos": {"temperature": 0.5}}},
        {"bars": {"count": 200}},
    ],
    ids=lambda c: str(c),
)
def test_a_forecast_changing_parameter_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="changes the forecasts: not a trial parameter"):
        run_trial(prepared(), make(**change), PERIOD.start, PERIOD.end)


def test_a_span_off_the_period_is_refused() -> None:
    with pytest.raises(ValueError, match="not an hour boundary"):
        run_trial(prepared(), make(), PERIOD.start - HOUR, PERIOD.end)


def test_a_warm_prepare_needs_no_model_and_gives_the_same_trials() -> None:
    first = prepared()
    with CacheStore.in_dir(cache_dir()) as cache:
        again = prepare_trials(make(), store(), PERIOD, forecaster=None, cache=cache)
    assert again.forecasts["computed"] == 0 and again.forecasts["cached"] == first.forecasts["computed"]
    s = make(exits={"trail_percent": 0.6})
    assert run_trial(again, s, PERIOD.start, PERIOD.end) == run_trial(first, s, PERIOD.start, PERIOD.end)


def test_a_cold_prepare_without_a_model_is_refused_when_forecasts_are_missing(tmp_path: Path) -> None:
    with CacheStore.in_dir(cache_dir()) as cache:
        prepare_trials(make(), store(), PERIOD, forecaster=None, cache=cache)  # warm: fine
    longer = Period(PERIOD.start, PERIOD.end + 4 * HOUR)
    with CacheStore.in_dir(cache_dir()) as cache, pytest.raises(ValueError, match="not in the cache"):
        prepare_trials(make(), store(), longer, forecaster=None, cache=cache)


def test_trial_data_pickles() -> None:
    data = pickle.loads(pickle.dumps(prepared()))
    s = make(risk={"cooldown_minutes": 0})
    assert run_trial(data, s, PERIOD.start, PERIOD.end) == run_trial(prepared(), s, PERIOD.start, PERIOD.end)


def test_technical_verdict_equals_the_technical_gate_on_the_kept_windows() -> None:
    data = prepared()
    memo = BarsMemo(None, data.settings.bars)
    rng = random.Random(3)
    frames = [
        (g.technical, memo.frame(data.store.window(g.symbol, hour.time, data.settings.bars)))
        for hour in data.hours[::3]
        for g in hour.gates
    ]
    for _ in range(12):
        low = rng.uniform(0, 60)
        bounds = TechnicalSettings(rsi_min=low, rsi_max=rng.uniform(low + 1, 100))
        for kept, frame in frames:
            expected = technical_gate(frame, bounds)
            got = technical_verdict(kept, bounds)
            assert (got.verdict, got.checks) == (expected.verdict, expected.checks)


def test_only_hours_that_can_enter_run_the_engine() -> None:
    from kronos_bot.backtest.trials import _candidates

    data = prepared()
    strict = make(gates={"kronos": {"threshold_percent": 0.3, "min_confidence": 0.3}}).gates.kronos
    some = _candidates(data, strict, 0, len(data.hours))
    assert 0 < len(some) < len(data.hours)  # the shortcut is taken, and the equality tests cover it


def test_an_exit_the_monitor_cannot_carry_out_replays_the_trial_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial keeps no broker backstops and carries stop raises in memory, which is exact only while the
    monitor carries out every exit verdict; when a sell is refused the trial is replayed in full (the
    backtest's `Replay`, backstops and all) and still equals the backtest."""
    from kronos_bot.backtest import trials
    from kronos_bot.broker.base import OrderRejected
    from kronos_bot.broker.sim import SimBroker

    sell = SimBroker.sell_qty

    def refusing(self: SimBroker, symbol: str, qty: Any, client_order_id: str) -> Any:
        if self.clock().hour % 3 == 0:  # the exchange refuses every third hour's sells
            raise OrderRejected("refused by the test", status_code=422)
        return sell(self, symbol, qty, client_order_id)

    monkeypatch.setattr(SimBroker, "sell_qty", refusing)
    full: list[int] = []
    plain = trials.Replay

    class CountingReplay(plain):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            full.append(1)
            super().__init__(*args)

    monkeypatch.setattr(trials, "Replay", CountingReplay)
    s = make(exits={"trail_percent": 0.5, "stop_loss_percent": 1.0})
    trial = run_trial(prepared(), s, PERIOD.start, PERIOD.end)
    run = backtest(s)
    assert run.exit_mismatches > 0  # verdicts were refused ...
    assert full == [1]  # ... so the quick replay gave up once and the full one finished
    assert_same(trial, run)
