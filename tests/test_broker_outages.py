"""Broker auth failures and outages as the trader lives them: one degraded episode each, no tracebacks,
entries paused, exits still trying, repeated warnings collapsed into the episode's counts; `status` too."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from kronos_bot.domain import Action, Decision, Tier
from kronos_bot.trader.daemon import TraderDaemon, build_trader_parts, run_exit_check
from kronos_bot.trader.health import DegradedTracker
from tests.fakealpaca import FakeAlpaca, Fault
from tests.trader_support import CYCLE_NOW, JsonLogs, ScriptedForecaster, load_market, settings_for

D = Decimal
KEYS = {"ALPACA_API_KEY": "PKFAKEKEY123", "ALPACA_SECRET_KEY": "fake-secret-abcdef"}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def alpaca_parts(tmp_path: Path, fake: FakeAlpaca, clock: Clock, monkeypatch: Any, **sections: Any) -> Any:
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    broker = {
        "kind": "alpaca",
        "backoff_seconds": 0.0,
        "request_timeout_seconds": 2.0,
        "max_attempts": 3,
        "trading_url_override": fake.base_url,
    }
    settings = settings_for(tmp_path, fake.base_url, broker=broker, risk={"cooldown_minutes": 0}, **sections)
    forecaster = ScriptedForecaster(dict.fromkeys(settings.symbols, 0.02))
    return build_trader_parts(settings, clock=clock, forecaster_factory=lambda: forecaster)


def open_position(parts: Any, fake: FakeAlpaca, symbol: str = "BTC/USD") -> Any:
    price = fake.market.latest_trades[symbol]["p"]
    fake.trading.set_price(symbol, price)
    decision = Decision(symbol, Action.ENTER, Tier.KRONOS_ONLY, D(60), ["kronos_only"], CYCLE_NOW)
    return parts.executor.enter(decision, cycle_time=CYCLE_NOW).position


def test_401_on_reads_is_one_broker_auth_episode_entries_pause_exits_keep_trying(
    tmp_path: Path, fake_alpaca: FakeAlpaca, monkeypatch: Any
) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = alpaca_parts(tmp_path, fake_alpaca, clock, monkeypatch)
    try:
        position = open_position(parts, fake_alpaca)
        assert position is not None
        refused = fake_alpaca.fail(
            r"/v2/(account|positions.*|orders.*)", Fault.http_status(401, "unauthorized."), times=None, method="GET"
        )
        with JsonLogs() as captured:
            for _ in range(3):
                report = parts.cycle.run(trade=True)
                assert report.status == "partial"  # decisions made, the broker refused
                assert {d.symbol: d.reasons for d in report.decisions}["ETH/USD"] == ["broker_auth"]
                clock.now += timedelta(minutes=1)
                run_exit_check(parts)  # exits keep asking, every tick
            exit_requests = refused.hits
            refused.remaining = 0  # the keys are fixed
            run_exit_check(parts)
        logs = captured.events
    finally:
        parts.close()
    assert exit_requests >= 6  # three cycles and three exit ticks all tried the broker
    events = [e["event"] for e in logs]
    assert "cycle.error" not in events and "job.error" not in events and "exit.error" not in events
    starts = [e for e in logs if e["event"] == "degraded.start"]
    assert [e["component"] for e in starts] == ["broker_auth"]
    assert "ALPACA_API_KEY" in starts[0]["fix"] and "401" in starts[0]["reason"]
    ends = [e for e in logs if e["event"] == "degraded.end"]
    assert [e["component"] for e in ends] == ["broker_auth"]
    assert not any("Traceback" in json.dumps(e) for e in logs)
    unavailable = [e for e in logs if e["event"] == "exit.broker_unavailable"]
    assert [e["level"] for e in unavailable].count("warning") <= 1


def test_a_404_on_the_account_positions_or_orders_is_one_broker_outage_not_a_traceback(
    tmp_path: Path, fake_alpaca: FakeAlpaca, monkeypatch: Any
) -> None:
    # A wrong trading URL (or a proxy in the way) answers 404 with an empty body to every read.
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = alpaca_parts(tmp_path, fake_alpaca, clock, monkeypatch)
    try:
        assert open_position(parts, fake_alpaca) is not None
        missing = fake_alpaca.fail(r"/v2/.*", Fault.foreign_status(404, "<html>not found</html>"), times=None)
        with JsonLogs() as captured:
            for _ in range(2):
                report = parts.cycle.run(trade=True)
                assert {d.symbol: d.reasons for d in report.decisions}["ETH/USD"] == ["broker_unavailable"]
                clock.now += timedelta(minutes=1)
                run_exit_check(parts)
            assert missing.hits >= 4
            missing.remaining = 0
            parts.cycle.run(trade=True)
        logs = captured.events
        still_open = len(parts.journal.open_positions())
    finally:
        parts.close()
    events = [e["event"] for e in logs]
    assert "cycle.error" not in events and "job.error" not in events and "exit.error" not in events
    starts = [e for e in logs if e["event"] == "degraded.start"]
    assert [e["component"] for e in starts] == ["broker"]
    assert "HTTP 404 without Alpaca's error body" in starts[0]["reason"]
    assert "trading_url_override" in starts[0]["reason"] and "exits keep trying" in starts[0]["fix"]
    # a bare 404 to a lookup is never read as "that order does not exist"
    assert [e for e in logs if e["event"] == "reconcile.order_lost"] == []
    assert still_open >= 1  # the position lived through the outage (the cycle after it may add others)
    assert [e["component"] for e in logs if e["event"] == "degraded.end"] == ["broker"]
    assert not any("Traceback" in json.dumps(e) for e in logs)


def test_retries_inside_an_outage_are_debug_and_counted_in_degraded_end(
    tmp_path: Path, fake_alpaca: FakeAlpaca, monkeypatch: Any
) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = alpaca_parts(tmp_path, fake_alpaca, clock, monkeypatch, logging={"level": "DEBUG"})
    try:
        assert open_position(parts, fake_alpaca) is not None
        outage = fake_alpaca.fail(r"/v2/.*", Fault.server_error(503), times=None, method="GET")
        with JsonLogs() as captured:
            captured_level_debug()
            for _ in range(5):
                clock.now += timedelta(minutes=1)
                run_exit_check(parts)
            outage.remaining = 0
            run_exit_check(parts)
        logs = captured.events
    finally:
        parts.close()
    retries = [e for e in logs if e["event"] == "broker.retry"]
    warned = [e for e in retries if e["level"] == "warning"]
    assert len(retries) >= 10 and len(warned) <= 2  # only the first failing call warns, before degraded.start
    [start] = [e for e in logs if e["event"] == "degraded.start"]
    [end] = [e for e in logs if e["event"] == "degraded.end"]
    assert start["component"] == end["component"] == "broker"
    assert end["suppressed"]["broker.retry"] == len(retries) - len(warned)
    assert end["suppressed"]["exit.broker_unavailable"] >= 4


def captured_level_debug() -> None:
    """JsonLogs configures INFO; these tests read the debug lines too."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))


def test_skipped_scheduler_runs_during_an_episode_are_debug_and_counted(tmp_path: Path) -> None:
    """APScheduler's own skip warning is replaced by `job.skipped`, quiet while an outage explains it."""
    from apscheduler.schedulers.background import BackgroundScheduler

    settings = settings_for(tmp_path, None)
    parts = build_trader_parts(settings, forecaster_factory=lambda: ScriptedForecaster())
    try:
        daemon = TraderDaemon(parts)
        scheduler = BackgroundScheduler(timezone="UTC")
        daemon.scheduler = scheduler
        daemon._install_skip_reporting()
        release = threading.Event()
        stream = io.StringIO()
        with JsonLogs() as captured:
            captured_level_debug()
            logging.getLogger().addHandler(logging.StreamHandler(stream))
            parts.health.set("broker", "scripted outage")
            scheduler.add_job(
                lambda: release.wait(5),
                "interval",
                seconds=0.05,
                id="slow",
                max_instances=1,
                next_run_time=datetime.now().astimezone(),
            )
            scheduler.start()
            time.sleep(0.6)
            release.set()
            scheduler.shutdown(wait=True)
            parts.health.clear("broker")
        logs = captured.events
    finally:
        parts.close()
    skipped = [e for e in logs if e["event"] == "job.skipped"]
    assert skipped and all(e["level"] == "debug" for e in skipped)
    [end] = [e for e in logs if e["event"] == "degraded.end"]
    assert end["suppressed"]["job.skipped"] >= 3
    assert "maximum number of running instances" not in stream.getvalue()


def test_repeat_counts_only_inside_an_episode() -> None:
    health = DegradedTracker()
    assert not health.repeat("broker", "broker.retry")
    health.set("broker", "down")
    assert health.repeat(("broker", "broker_auth"), "broker.retry")
    assert health.repeat(None, "job.skipped")
    assert not health.repeat("forecaster", "forecaster.retry")


def test_status_reports_a_forecaster_that_answers_401_and_never_crashes(tmp_path: Path, monkeypatch: Any) -> None:
    from kronos_bot.cli import main
    from kronos_bot.forecaster.server import BackgroundServer
    from kronos_bot.forecaster.service import create_app
    from kronos_bot.trader.journal import Journal
    from tests.forecaster_support import TOKEN

    server = BackgroundServer(create_app(lambda: ScriptedForecaster(), token=TOKEN), host="127.0.0.1").start()
    try:
        server.wait_ready(10)
        config = tmp_path / "bot.yaml"
        from tests.trader_support import write_settings

        write_settings(
            tmp_path,
            "http://127.0.0.1:9",
            forecaster={"mode": "service", "url": server.endpoint.url},
            bars={"request_timeout_seconds": 1.0},
        )
        with Journal(tmp_path / "journal.sqlite") as journal:  # one open position: status asks for its price
            from kronos_bot.config import ExitSettings
            from kronos_bot.trader.stops import initial_state

            journal.open_position(
                symbol="BTC/USD",
                entry_time=CYCLE_NOW,
                entry_price=D(100),
                entry_filled_qty=D(1),
                entry_cost=D(100),
                qty=D("0.9975"),
                stop=initial_state(D(100), CYCLE_NOW, ExitSettings()),
            )
        out = io.StringIO()
        started = time.monotonic()
        with redirect_stdout(out):
            code = main(["status", "--config", str(config)])
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    text = out.getvalue()
    assert code == 0, text
    assert "Traceback" not in text
    assert "down: forecaster" in text and "unauthorized" in text
    assert "down: market_data" in text  # the data API does not answer: said, not raised
    assert "BTC/USD" in text  # and what the journal knows is still shown
    assert elapsed < 10
