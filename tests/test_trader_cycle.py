"""One entry cycle wired as the daemon wires it: fake Alpaca data over HTTP, sim broker, scripted Kronos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kronos_bot.market.news import NewsArticle, NewsFeed
from kronos_bot.trader.daemon import build_trader_parts, run_exit_check
from tests.fakealpaca import Fault
from tests.trader_support import (
    CYCLE_NOW,
    LAST_BAR_OPEN,
    SYMBOLS,
    JsonLogs,
    ScriptedForecaster,
    load_market,
    settings_for,
)

DECISION_KEYS = {"symbol", "action", "tier", "notional", "reasons", "technical", "sentiment", "kronos"}
TECH_KEYS = {"rsi", "ema_fast", "ema_slow", "macd", "macd_hist", "checks", "verdict"}
SENT_KEYS = {"score", "articles", "veto", "verdict"}
KRONOS_KEYS = {"last_close", "pred_close", "pct", "p_up", "confidence", "signal", "actionable"}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class BullishNews:
    """A news provider with one clearly positive fresh article per symbol."""

    name = "scripted"

    def __init__(self, now: datetime) -> None:
        self.now = now

    def fetch(self, symbols, start, end, limit):
        return [
            NewsArticle(
                id=f"good-{s}",
                headline=f"{s.split('/')[0]} surges to record high as ETF approval boosts adoption",
                summary="Strong gains, great momentum and growing institutional demand.",
                created_at=self.now - timedelta(minutes=30),
                symbols=(s,),
            )
            for s in symbols
        ]


def build(tmp_path: Path, fake, forecaster: ScriptedForecaster, clock: Clock, **sections):
    settings = settings_for(tmp_path, fake.base_url, **sections)
    return build_trader_parts(settings, clock=clock, forecaster_factory=lambda: forecaster)


def decisions(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "decision"]


def test_one_decision_event_per_symbol_with_every_gate_number(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = build(tmp_path, fake_alpaca, ScriptedForecaster({"BTC/USD": 0.02}), clock)
    try:
        with JsonLogs() as captured:
            report = parts.cycle.run(trade=False)
    finally:
        parts.close()
    logs = captured.events
    events = decisions(logs)
    assert [e["symbol"] for e in events] == list(SYMBOLS)
    for event in events:
        assert set(event) >= DECISION_KEYS
        assert set(event["technical"]) >= TECH_KEYS
        assert set(event["sentiment"]) >= SENT_KEYS
        assert set(event["kronos"]) >= KRONOS_KEYS
        assert event["cycle_id"] == report.cycle_id
    start = [e for e in logs if e["event"] == "cycle.start"]
    end = [e for e in logs if e["event"] == "cycle.end"]
    assert len(start) == 1 and len(end) == 1
    assert {"bars", "technical", "sentiment", "kronos", "engine"} <= set(end[0]["durations"])
    # The journal holds the same decisions.
    parts = build(tmp_path, fake_alpaca, ScriptedForecaster(), clock)
    try:
        rows = parts.journal.recent_decisions()
    finally:
        parts.close()
    assert sorted(r["symbol"] for r in rows) == sorted(SYMBOLS)
    assert all(r["config_fingerprint"] for r in rows)


def test_kronos_only_entry_is_sized_at_sixty_percent(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = build(tmp_path, fake_alpaca, ScriptedForecaster({"BTC/USD": 0.02}), clock)
    try:
        with capture_logs() as logs:
            report = parts.cycle.run(trade=True)
        positions = parts.journal.open_positions()
    finally:
        parts.close()
    by_symbol = {d.symbol: d for d in report.decisions}
    btc = by_symbol["BTC/USD"]
    assert btc.action.value == "ENTER"
    assert btc.tier is not None and btc.tier.value == "kronos_only"
    assert btc.notional == Decimal("60.00")  # fixed_usd 100 x kronos_only 0.6
    for symbol in ("ETH/USD", "SOL/USD", "DOGE/USD"):
        assert by_symbol[symbol].action.value == "SKIP"
        assert "kronos_not_up" in by_symbol[symbol].reasons
    assert [p.symbol for p in positions] == ["BTC/USD"]
    assert positions[0].tier == "kronos_only"
    assert any(e["event"] == "position.opened" for e in logs)


def test_triple_confirmed_entry_is_full_size(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    # Technical checks switched off -> PASS by definition; bullish news; Kronos up.
    parts = build(
        tmp_path,
        fake_alpaca,
        ScriptedForecaster({"ETH/USD": 0.03}),
        clock,
        **{"gates.technical": {"check_rsi": False, "check_ema": False, "check_macd": False}},
    )
    parts.cycle.news_feed = NewsFeed(BullishNews(CYCLE_NOW), parts.settings.gates.sentiment)
    try:
        report = parts.cycle.run(trade=True)
    finally:
        parts.close()
    eth = next(d for d in report.decisions if d.symbol == "ETH/USD")
    assert eth.action.value == "ENTER", eth.reasons
    assert eth.tier is not None and eth.tier.value == "triple_confirmed"
    assert eth.notional == Decimal("100.00")
    assert report.gates["ETH/USD"].sentiment.verdict.value == "BULLISH"


def test_a_symbol_with_bad_data_is_skipped_and_the_others_go_on(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    # SOL's last 6 hours are missing: its newest bar is stale, and there are more gaps than allowed.
    fake_alpaca.market.remove_bars("SOL/USD", *[LAST_BAR_OPEN - timedelta(hours=i) for i in range(6)])
    clock = Clock(CYCLE_NOW)
    parts = build(tmp_path, fake_alpaca, ScriptedForecaster({"BTC/USD": 0.02}), clock)
    try:
        with capture_logs() as logs:
            report = parts.cycle.run(trade=False)
    finally:
        parts.close()
    by_symbol = {d.symbol: d for d in report.decisions}
    assert by_symbol["SOL/USD"].reasons == ["data_invalid"]
    assert any(e["event"] == "data.invalid" and e["symbol"] == "SOL/USD" for e in logs)
    assert by_symbol["BTC/USD"].action.value == "ENTER"
    assert len(decisions(logs)) == 4


def test_forecaster_outage_pauses_entries_and_is_logged_once_each_way(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    forecaster = ScriptedForecaster({"BTC/USD": 0.02})
    forecaster.down = True
    parts = build(tmp_path, fake_alpaca, forecaster, clock)
    try:
        with capture_logs() as logs:
            first = parts.cycle.run(trade=True)
            clock.now += timedelta(minutes=15)
            second = parts.cycle.run(trade=True)
            forecaster.down = False
            clock.now += timedelta(minutes=15)  # same closed bar, forecaster back
            third = parts.cycle.run(trade=True)
    finally:
        parts.close()
    for report in (first, second):
        btc = next(d for d in report.decisions if d.symbol == "BTC/USD")
        assert btc.action.value == "SKIP" and "kronos_unavailable" in btc.reasons
        assert report.gates["BTC/USD"].kronos.signal.value == "UNAVAILABLE"
    starts = [e for e in logs if e["event"] == "degraded.start" and e["component"] == "forecaster"]
    ends = [e for e in logs if e["event"] == "degraded.end" and e["component"] == "forecaster"]
    assert len(starts) == 1
    assert len(ends) == 1
    btc = next(d for d in third.decisions if d.symbol == "BTC/USD")
    assert btc.action.value == "ENTER"


def test_forecast_cache_serves_the_cycles_that_see_the_same_closed_bar(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    forecaster = ScriptedForecaster()
    parts = build(tmp_path, fake_alpaca, forecaster, clock)
    try:
        parts.cycle.run(trade=False)
        clock.now += timedelta(minutes=15)
        parts.cycle.run(trade=False)
        clock.now += timedelta(minutes=15)
        parts.cycle.run(trade=False)
    finally:
        parts.close()
    assert forecaster.calls == 1


def test_exit_check_trails_on_fresh_prices_and_sells_the_position(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = build(
        tmp_path,
        fake_alpaca,
        ScriptedForecaster({"BTC/USD": 0.02}),
        clock,
        exits={"trail_percent": 2.0, "stop_loss_percent": 5.0},
    )
    try:
        parts.cycle.run(trade=True)
        (position,) = parts.journal.open_positions()
        entry = float(position.entry_price)
        with capture_logs() as logs:
            for factor in (1.01, 1.03, 1.05):  # ratchets the high-water mark
                clock.now += timedelta(minutes=1)
                fake_alpaca.market.set_latest_trade("BTC/USD", entry * factor, ts=clock.now)
                assert run_exit_check(parts) == 0
            clock.now += timedelta(minutes=1)
            fake_alpaca.market.set_latest_trade("BTC/USD", entry * 1.02, ts=clock.now)  # > 2 % below HWM
            assert run_exit_check(parts) == 1
        closed = parts.journal.closed_positions()
    finally:
        parts.close()
    assert any(e["event"] == "stop.raised" for e in logs)
    assert closed[0].exit_reason == "trailing_stop"
    assert float(closed[0].hwm) == pytest.approx(entry * 1.05)
    assert any(e["event"] == "position.closed" for e in logs)


def test_exit_check_survives_a_market_data_outage(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = build(tmp_path, fake_alpaca, ScriptedForecaster({"BTC/USD": 0.02}), clock)
    try:
        parts.cycle.run(trade=True)
        fake_alpaca.fail(r"/v1beta3/crypto/us/latest/trades", Fault.server_error(), times=None)
        with capture_logs() as logs:
            for _ in range(3):
                clock.now += timedelta(minutes=10)
                assert run_exit_check(parts) == 0
        still_open = parts.journal.open_positions()
    finally:
        parts.close()
    assert len(still_open) == 1  # no price -> no guess, no exit
    assert len([e for e in logs if e["event"] == "degraded.start" and e["component"] == "market_data"]) == 1


def test_daemon_schedule_uses_utc_cron_with_offset_and_safe_job_defaults(tmp_path: Path, fake_alpaca) -> None:
    from kronos_bot.systemd import Notifier
    from kronos_bot.trader.daemon import TraderDaemon

    clock = Clock(CYCLE_NOW)
    parts = build(tmp_path, fake_alpaca, ScriptedForecaster(), clock)
    try:
        daemon = TraderDaemon(
            parts, notifier=Notifier(environ={"WATCHDOG_USEC": "20000000", "NOTIFY_SOCKET": "/nonexistent"})
        )
        daemon.schedule()
        jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
        assert set(jobs) == {"entry", "exit", "watchdog", "heartbeat"}
        entry = jobs["entry"]
        fields = {f.name: str(f) for f in entry.trigger.fields}
        assert fields["minute"] == "0,15,30,45" and fields["second"] == "30"
        assert str(entry.trigger.timezone) == "UTC"
        assert entry.max_instances == 1 and entry.coalesce is True
        assert entry.misfire_grace_time == parts.settings.schedule.misfire_grace_seconds
        assert jobs["exit"].trigger.interval.total_seconds() == 60
        assert jobs["watchdog"].trigger.interval.total_seconds() == 10
        assert jobs["heartbeat"].trigger.interval.total_seconds() == 15 * 60
    finally:
        parts.close()


def test_cycle_slot_names_orders_per_schedule_slot() -> None:
    from kronos_bot.trader.cycle import cycle_slot

    t = datetime(2025, 1, 1, 12, 15, 30, 400000, tzinfo=UTC)
    assert cycle_slot(t) == datetime(2025, 1, 1, 12, 15, tzinfo=UTC)
    assert cycle_slot(t + timedelta(seconds=20)) == cycle_slot(t)  # a retry in the same slot: same orders
    assert cycle_slot(t, 2) == datetime(2025, 1, 1, 12, 15, 30, tzinfo=UTC)
    assert cycle_slot(t + timedelta(seconds=2), 2) != cycle_slot(t, 2)  # the next 2 s slot: new orders
