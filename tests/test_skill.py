"""Self-grading (#13): scores on hand-made cases, the summary, the guard both ways, shadows, the journal
rendered by `kronos-bot skill --json`, and the live cycle recording and scoring its forecasts."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import scoringrules as sr

from kronos_bot.config import ExitSettings, Settings
from kronos_bot.skill.scores import ForecastFacts, facts_from_paths, score, score_many
from kronos_bot.skill.shadow import Bar, attribution, shadow_entry
from kronos_bot.skill.summary import ScoredForecast, no_skill, summarize, wilson
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.skill_keeper import SkillKeeper, score_pending
from tests.broker_support import captured_logs
from tests.conftest import SHIPPED_CONFIG

D = Decimal
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def facts(ensemble: list[float], last: float = 100.0, predicted: float | None = None, **kw: float) -> ForecastFacts:
    closes = [last] * 30
    base = facts_from_paths(last, predicted if predicted is not None else float(np.mean(ensemble)), ensemble, closes, 4)
    return ForecastFacts(**{**base.__dict__, **kw})


# ----- one forecast -----


def test_scores_of_a_hand_made_forecast() -> None:
    f = facts([98.0, 100.0, 101.0, 103.0], sigma=0.01, drift=0.0)
    s = score(f, 102.0)
    assert s.hit and f.p_up == 0.5 and s.brier == pytest.approx(0.25)
    # CRPS of an ensemble by hand: mean |x - y| - mean |x - x'| / 2, in percent of the last close.
    x = np.array([0.98, 1.00, 1.01, 1.03])
    by_hand = np.mean(np.abs(x - 1.02)) - 0.5 * np.mean(np.abs(x[:, None] - x[None, :]))
    assert s.crps == pytest.approx(by_hand * 100, rel=1e-9)
    assert s.crps == pytest.approx(float(sr.crps_ensemble(1.02, x)) * 100, rel=1e-12)
    assert s.pit == 0.75 and s.covered and s.abs_error_pct == pytest.approx(abs(100.5 - 102.0))
    assert s.baseline_brier == 0.25
    # The random-walk baseline's CRPS is the lognormal's: check it against numerical integration.
    spread = 0.01 * math.sqrt(4)
    grid = np.linspace(0.8, 1.2, 400_001)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(np.log(grid) / (spread * math.sqrt(2))))
    integral = np.trapezoid((cdf - (grid >= 1.02)) ** 2, grid)
    assert s.baseline_crps == pytest.approx(integral * 100, rel=1e-3)


def test_a_sure_wrong_forecast_scores_worst_and_a_sure_right_one_best() -> None:
    wrong = score(facts([105.0] * 8, sigma=0.01, drift=0.0), 95.0)
    right = score(facts([95.0] * 8, sigma=0.01, drift=0.0), 95.0)
    assert (wrong.hit, wrong.brier, wrong.covered, wrong.pit) == (False, 1.0, False, 0.0)
    assert (right.hit, right.brier, right.crps) == (True, 0.0, 0.0)
    assert right.crps < right.baseline_crps < wrong.crps


def test_vectorized_scores_equal_one_by_one() -> None:
    rng = np.random.default_rng(3)
    cases = [facts(list(100 + rng.normal(0, 2, size=n)), sigma=0.01, drift=0.001) for n in (4, 16, 16, 32)]
    actuals = [99.0, 101.0, 103.0, 100.0]
    together = score_many(cases, actuals)
    assert together == [score(f, a) for f, a in zip(cases, actuals, strict=True)]


def test_facts_round_trip_through_json() -> None:
    f = facts([99.0, 101.0], sigma=0.02, drift=-0.001)
    assert ForecastFacts.from_json(json.loads(json.dumps(f.to_json()))) == f


# ----- many forecasts -----


def _rows(n: int, *, good: bool, start: datetime = T0) -> list[ScoredForecast]:
    out = []
    for i in range(n):
        up = i % 2 == 0
        actual = 102.0 if up else 98.0
        ensemble = [101.0, 102.0, 103.0] if up == good else [97.0, 98.0, 99.0]
        out.append(ScoredForecast("BTC/USD", start + i * HOUR, score(facts(ensemble, sigma=0.01, drift=0.0), actual)))
    return out


def test_summary_of_a_perfect_and_a_hopeless_forecaster() -> None:
    good, bad = summarize(_rows(40, good=True)), summarize(_rows(40, good=False))
    assert good["hit_rate"] == 1.0 and good["brier"] == 0.0 and good["brier_skill"] == 1.0
    assert good["crps_skill"] > 0.5 and good["coverage_p10_p90"] == 1.0
    assert bad["hit_rate"] == 0.0 and bad["brier"] == 1.0 and bad["brier_skill"] == pytest.approx(-3.0)
    assert bad["brier_skill_ci"][1] < 0 and sum(bad["pit_histogram"]) == 40
    lo, hi = wilson(52, 100)
    assert lo == pytest.approx(0.4231, abs=1e-3) and hi == pytest.approx(0.6153, abs=1e-3)
    assert no_skill(bad, min_n=40) and not no_skill(bad, min_n=41) and not no_skill(good, min_n=10)


# ----- shadows -----


def _bars(prices: list[tuple[float, float, float, float]], start: datetime = T0) -> dict[datetime, Bar]:
    return {start + i * HOUR: Bar(start + i * HOUR, *(D(str(v)) for v in p)) for i, p in enumerate(prices)}


def test_shadow_entry_exits_at_the_stop_after_fees() -> None:
    exits = ExitSettings(trail_percent=2, stop_loss_percent=5, trail_activation_percent=0)
    bars = _bars([(100, 101, 99.5, 100.5), (100.5, 104, 100.2, 103.5), (103.5, 103.6, 101, 101.2)])
    shadow = shadow_entry(T0, bars.get, exits, fee_rate=D("0.0025"), slippage=D(0), max_hours=10)
    # bar 1 raises the HWM to 104 -> stop 101.92; bar 2's low 101 is below it: exit at 101.92.
    assert shadow.done and shadow.exit_reason == "trailing_stop" and shadow.exit_price == D("101.92")
    assert shadow.return_pct == pytest.approx(((1 - 0.0025) ** 2 * 101.92 / 100 - 1) * 100)
    unfinished = shadow_entry(
        T0, _bars([(100, 100.5, 99.9, 100.2)]).get, exits, fee_rate=D(0), slippage=D(0), max_hours=10
    )
    assert not unfinished.done
    capped = shadow_entry(T0, bars.get, exits, fee_rate=D(0), slippage=D(0), max_hours=1)
    assert capped.done and capped.exit_reason == "open" and capped.exit_price == D("100.5")


def test_attribution_groups_by_blocking_reason() -> None:
    rows = [
        {"action": "SKIP", "reasons": ["kronos_not_up"], "return_pct": -1.0},
        {"action": "SKIP", "reasons": ["kronos_not_up", "sentiment_bearish_veto"], "return_pct": -3.0},
        {"action": "ENTER", "tier": "kronos_only", "reasons": [], "return_pct": 2.0},
        {"action": "SKIP", "reasons": ["position_open"], "return_pct": None},
    ]
    out = attribution(rows)
    assert out["kronos_not_up"] == {"count": 2, "mean_return_pct": -2.0, "win_rate": 0.0}
    assert out["sentiment_bearish_veto"]["count"] == 1 and out["ENTER:kronos_only"]["win_rate"] == 1.0
    assert "position_open" not in out


# ----- the journal, the guard, the command -----


def record(journal: Journal, symbol: str, origin: datetime, f: ForecastFacts, seed: int | None = 1) -> None:
    """A horizon-4 forecast made at `origin` (its horizon bar opens 3 h later), as the trader records it."""
    journal.record_skill_forecast(
        symbol=symbol,
        origin=origin,
        horizon=4,
        horizon_bar=origin + 3 * HOUR,
        model="m",
        seed=seed,
        samples=len(f.horizon_closes),
        facts=f.to_json(),
        now=origin,
    )


def _journal_with(tmp_path: Path, rows: list[tuple[datetime, list[float], float]]) -> Journal:
    journal = Journal(tmp_path / "j.sqlite")
    for origin, ensemble, _actual in rows:
        f = facts(ensemble, sigma=0.01, drift=0.0)
        record(journal, "BTC/USD", origin, f)
    actuals = {origin + 3 * HOUR: actual for origin, _ens, actual in rows}
    score_pending(journal, lambda _s, t: actuals.get(t), T0 + timedelta(days=30), give_up=lambda _t: True)
    return journal


def _series(n: int, good: bool, start: datetime) -> list[tuple[datetime, list[float], float]]:
    out = []
    for i in range(n):
        up = i % 2 == 0
        ens = [101.0, 102.0, 103.0] if up == good else [97.0, 98.0, 99.0]
        out.append((start + i * HOUR, ens, 102.0 if up else 98.0))
    return out


def test_skill_json_of_a_journal(tmp_path: Path) -> None:
    from kronos_bot.cli import main

    journal = _journal_with(tmp_path, _series(30, good=True, start=T0))
    record(journal, "ETH/USD", T0, facts([1.0, 2.0, 3.0]))
    journal.close()
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["skill", "--config", str(SHIPPED_CONFIG), "--journal", str(tmp_path / "j.sqlite"), "--json"]) == 0
    data = json.loads(out.getvalue())
    keys = {
        "n",
        "hit_rate",
        "hit_rate_ci",
        "brier",
        "brier_baseline",
        "brier_skill",
        "crps",
        "crps_baseline",
        "crps_skill",
        "coverage_p10_p90",
    }
    assert keys <= set(data["overall"]) and keys <= set(data["by_symbol"]["BTC/USD"])
    assert data["overall"]["n"] == 30 and data["overall"]["hit_rate"] == 1.0
    assert set(data["overall"]["windows"]) == {"7d", "30d", "all"}
    assert data["counts"] == {"scored": 30, "pending": 1}
    text = io.StringIO()
    with redirect_stdout(text):
        assert main(["skill", "--config", str(SHIPPED_CONFIG), "--journal", str(tmp_path / "j.sqlite")]) == 0
    assert "BTC/USD" in text.getvalue() and "PIT histogram" in text.getvalue()


def test_guard_flips_on_then_off_and_says_each_once(tmp_path: Path) -> None:
    settings = Settings(gates={"kronos": {"skill_guard": "block", "skill_guard_min_n": 20}})
    journal = _journal_with(tmp_path, _series(30, good=False, start=T0))
    keeper = SkillKeeper(journal, settings)
    now = T0 + timedelta(days=2)
    with captured_logs() as logs:
        assert keeper.refresh_guard(now) and keeper.blocking
        assert keeper.refresh_guard(now)  # still on: not said again
        # Good forecasts arrive; the 30-day window now holds mostly skill.
        for origin, ens, actual in _series(400, good=True, start=T0 + timedelta(days=3)):
            f = facts(ens, sigma=0.01, drift=0.0)
            record(journal, "BTC/USD", origin, f)
            journal.finish_skill_forecast(
                journal.pending_skill_forecasts(origin + 4 * HOUR)[0]["id"],
                scores=score(f, actual).to_json(),
                now=origin,
            )
        assert not keeper.refresh_guard(T0 + timedelta(days=20))
    guard = [e for e in logs if e["event"] == "skill.guard"]
    assert [e["state"] for e in guard] == ["no_skill", "skill_ok"]
    assert guard[0]["log_level"] == "warning" and "not actionable" in guard[0]["effect"]
    journal.close()


def test_guard_off_never_flags(tmp_path: Path) -> None:
    journal = _journal_with(tmp_path, _series(30, good=False, start=T0))
    keeper = SkillKeeper(journal, Settings(gates={"kronos": {"skill_guard": "off", "skill_guard_min_n": 20}}))
    assert not keeper.refresh_guard(T0 + timedelta(days=2))
    journal.close()


def test_unscorable_forecasts_are_counted_not_dropped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    f = facts([99.0, 101.0])
    record(journal, "SOL/USD", T0, f, seed=None)
    with captured_logs() as logs:
        counts = score_pending(journal, lambda _s, _t: None, T0 + timedelta(days=5), give_up=lambda _t: True)
    assert counts == {"scored": 0, "unscorable": 1}
    assert journal.skill_counts() == {"unscorable": 1}
    assert [e["event"] for e in logs] == ["forecast.unscorable"]
    journal.close()


# ----- the live cycle -----


def test_the_cycle_records_its_forecasts_and_scores_them_when_the_horizon_bar_closes(
    tmp_path: Path, fake_alpaca
) -> None:
    from tests.test_trader_cycle import Clock, build
    from tests.trader_support import CYCLE_NOW, LAST_BAR_OPEN, SYMBOLS, ScriptedForecaster, fixture_bars, load_market

    load_market(fake_alpaca)
    first_origin = LAST_BAR_OPEN - 3 * HOUR  # bars up to LAST_BAR_OPEN - 4h are closed at this time
    clock = Clock(first_origin + timedelta(seconds=30))
    forecaster = ScriptedForecaster({"BTC/USD": 0.02, "ETH/USD": -0.02}, samples_spread=0.002)
    parts = build(tmp_path, fake_alpaca, forecaster, clock)
    try:
        with captured_logs() as logs:
            parts.cycle.run(trade=False)
            clock.now += timedelta(minutes=15)  # same closed bar: the forecast is not recorded twice
            parts.cycle.run(trade=False)
            assert parts.journal.skill_counts() == {"pending": len(SYMBOLS)}
            clock.now = CYCLE_NOW  # four bars later: the horizon bar (LAST_BAR_OPEN) has closed
            parts.cycle.run(trade=False)
        rows = parts.journal.skill_forecasts(status="scored")
    finally:
        parts.close()
    scored = {
        e["symbol"]: e for e in logs if e["event"] == "forecast.scored" and e["origin"] == first_origin.isoformat()
    }
    assert set(scored) == set(SYMBOLS)
    for symbol in ("BTC/USD", "ETH/USD"):
        df = fixture_bars(symbol)
        start, actual = float(df["close"].iloc[-5]), float(df["close"].iloc[-1])
        assert scored[symbol]["actual"] == pytest.approx(actual)
        went_up = actual > start
        assert scored[symbol]["hit"] == (went_up if symbol == "BTC/USD" else not went_up)
    assert {r["symbol"] for r in rows if r["origin"] == first_origin} == set(SYMBOLS)
    assert all(r["samples"] == 32 for r in rows)  # the shipped default
    # once a UTC day: the first cycle (Dec 31) and the first after midnight, not the one in between
    summaries = [e for e in logs if e["event"] == "skill.summary"]
    assert len(summaries) == 2 and summaries[-1]["scored"] == len(SYMBOLS)


def test_a_blocking_guard_turns_kronos_entries_into_skips(tmp_path: Path, fake_alpaca) -> None:
    from tests.test_trader_cycle import Clock, build
    from tests.trader_support import CYCLE_NOW, ScriptedForecaster, load_market

    # 60 confidently wrong forecasts in the last days, in the trader's own journal.
    journal = Journal(tmp_path / "journal.sqlite")
    for origin, ens, actual in _series(60, good=False, start=CYCLE_NOW - timedelta(days=5)):
        f = facts(ens, sigma=0.01, drift=0.0)
        record(journal, "BTC/USD", origin, f)
        row = journal.pending_skill_forecasts(origin + 4 * HOUR)[0]
        journal.finish_skill_forecast(row["id"], scores=score(f, actual).to_json(), now=origin)
    journal.close()

    load_market(fake_alpaca)
    forecaster = ScriptedForecaster({"BTC/USD": 0.02})
    for mode, expected in (("warn", "ENTER"), ("block", "SKIP")):
        clock = Clock(CYCLE_NOW)
        parts = build(
            tmp_path, fake_alpaca, forecaster, clock, **{"gates.kronos": {"skill_guard": mode, "skill_guard_min_n": 50}}
        )
        try:
            with captured_logs() as logs:
                report = parts.cycle.run(trade=False)
        finally:
            parts.close()
        btc = next(d for d in report.decisions if d.symbol == "BTC/USD")
        event = next(e for e in logs if e["event"] == "decision" and e["symbol"] == "BTC/USD")
        assert btc.action.value == expected, mode
        assert event["notes"] == ["kronos_no_skill"]
        assert ("kronos_no_skill" in btc.reasons) == (mode == "block")
        guard = [e for e in logs if e["event"] == "skill.guard"]
        assert [e["state"] for e in guard] == ["no_skill"] and guard[0]["mode"] == mode


@pytest.mark.parametrize("samples", [4, 32])
def test_coarse_sampling_is_warned_about_once(tmp_path: Path, fake_alpaca, monkeypatch, samples: int) -> None:
    from kronos_bot.gates import forecast_cache
    from tests.test_trader_cycle import Clock, build
    from tests.trader_support import CYCLE_NOW, ScriptedForecaster, load_market

    monkeypatch.setattr(forecast_cache, "_coarse_warned", set())
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = build(tmp_path, fake_alpaca, ScriptedForecaster(), clock, **{"gates.kronos": {"samples": samples}})
    try:
        with captured_logs() as logs:
            for _ in range(3):
                parts.cycle.run(trade=False)
                clock.now += timedelta(hours=1)  # a new closed bar each time: a new forecast
    finally:
        parts.close()
    warnings = [e for e in logs if e["event"] == "forecast.coarse_samples"]
    assert len(warnings) == (1 if samples < 16 else 0)
    if warnings:
        assert warnings[0]["samples"] == 4 and warnings[0]["log_level"] == "warning"


def test_status_shows_the_skill_line_and_the_guard_flag(tmp_path: Path, fake_alpaca) -> None:
    from kronos_bot.cli import main
    from tests.trader_support import write_settings

    config = write_settings(tmp_path, fake_alpaca.base_url, **{"gates.kronos": {"skill_guard_min_n": 50}})
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=5)
    journal = Journal(tmp_path / "journal.sqlite")
    for origin, ens, actual in _series(60, good=False, start=start):
        f = facts(ens, sigma=0.01, drift=0.0)
        record(journal, "BTC/USD", origin, f)
        row = journal.pending_skill_forecasts(origin + 4 * HOUR)[0]
        journal.finish_skill_forecast(row["id"], scores=score(f, actual).to_json(), now=origin)
    journal.close()
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["status", "--config", str(config), "--no-prices"]) == 0
    line = next(x for x in out.getvalue().splitlines() if x.startswith("forecast skill:"))
    assert "n 60  hit 0.0%" in line and "[kronos_no_skill" in line
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["status", "--config", str(config), "--no-prices", "--json"]) == 0
    skill = json.loads(out.getvalue())["skill"]
    assert skill["guard"] == "no_skill" and skill["overall"]["n"] == 60


def test_the_cycle_follows_each_decisions_shadow_entry_through_later_bars(tmp_path: Path, fake_alpaca) -> None:
    from tests.test_trader_cycle import Clock, build
    from tests.trader_support import CYCLE_NOW, LAST_BAR_OPEN, SYMBOLS, ScriptedForecaster, fixture_bars, load_market

    load_market(fake_alpaca)
    entry_bar = LAST_BAR_OPEN - 3 * HOUR  # the first cycle's decisions would fill at this bar's open
    clock = Clock(entry_bar + timedelta(seconds=30))
    wide = {"stop_loss_percent": 60, "trail_activation_percent": 90}  # no stop can fire: valued at the cap
    parts = build(
        tmp_path, fake_alpaca, ScriptedForecaster({"BTC/USD": 0.02}), clock, exits=wide, skill={"shadow_max_hours": 2}
    )
    try:
        parts.cycle.run(trade=False)
        assert len(parts.journal.pending_shadows()) == len(SYMBOLS)
        clock.now = CYCLE_NOW
        parts.cycle.run(trade=False)
        rows = [r for r in parts.journal.decisions_with_shadows() if r["decided_at"] < LAST_BAR_OPEN.isoformat()]
    finally:
        parts.close()
    assert {r["symbol"] for r in rows} == set(SYMBOLS)
    fee, slip = D("0.0025"), D("0.0005")  # the shipped broker.sim costs
    for r in rows:
        df = fixture_bars(r["symbol"])
        bought = D(str(df.loc[entry_bar, "open"])) * (1 + slip)
        sold = D(str(df.loc[entry_bar + HOUR, "close"])) * (1 - slip)
        assert r["exit_reason"] == "open"
        assert r["return_pct"] == pytest.approx(float(((1 - fee) ** 2 * sold / bought - 1) * 100), rel=1e-9)
