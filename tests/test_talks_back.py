"""The bot talks back (#14): /metrics of the trader, the state it leaves for `status`, `status` itself,
and the notifications of a real cycle against the fake Alpaca."""

from __future__ import annotations

import io
import json
import socket
import time
from contextlib import redirect_stdout
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kronos_bot.cli import main
from kronos_bot.trader.daemon import TraderDaemon, build_trader_parts, run_exit_check
from kronos_bot.trader.events import EventHub, NoEvents, TraderStarted
from kronos_bot.trader.metrics_server import MetricsServer
from tests.broker_support import captured_logs
from tests.test_trader_cycle import Clock
from tests.trader_support import CYCLE_NOW, SYMBOLS, ScriptedForecaster, load_market, settings_for, write_settings

D = Decimal


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def traded_parts(tmp_path: Path, fake: Any, **sections: Any) -> tuple[Any, Clock]:
    """Parts after one cycle in which BTC/USD entered at the kronos_only tier, and one exit tick."""
    load_market(fake)
    clock = Clock(CYCLE_NOW)
    parts = build_trader_parts(
        settings_for(tmp_path, fake.base_url, **sections),
        clock=clock,
        forecaster_factory=lambda: ScriptedForecaster({"BTC/USD": 0.02}),
    )
    parts.cycle.run(trade=True)
    clock.now += timedelta(minutes=1)
    run_exit_check(parts)
    return parts, clock


def test_trader_metrics_after_a_cycle(tmp_path: Path, fake_alpaca) -> None:
    parts, _clock = traded_parts(tmp_path, fake_alpaca)
    server = MetricsServer(parts.metrics.registry, "127.0.0.1", 0)
    try:
        assert server.start()
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    finally:
        server.stop()
        parts.close()
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert got[("kronos_bot_decisions_total", (("action", "ENTER"),))] == 1
    assert got[("kronos_bot_decisions_total", (("action", "SKIP"),))] == len(SYMBOLS) - 1
    assert got[("kronos_bot_entries_total", (("tier", "kronos_only"),))] == 1
    assert got[("kronos_bot_open_positions", ())] == 1
    assert got[("kronos_bot_cycles_total", (("status", "ok"),))] == 1
    assert got[("kronos_bot_cycle_seconds_count", ())] == 1
    assert got[("kronos_bot_exit_tick_seconds_count", ())] == 1
    assert got[("kronos_bot_equity_usd", ())] == pytest.approx(10_000, rel=0.01)
    assert 0 < got[("kronos_bot_cash_usd", ())] <= 10_000
    assert got[("kronos_bot_last_successful_cycle_timestamp_seconds", ())] >= CYCLE_NOW.timestamp()
    assert ("kronos_bot_unrealized_pnl_usd", (("symbol", "BTC/USD"),)) in got
    assert got[("kronos_bot_realized_pnl_usd", ())] == 0 and got[("kronos_bot_closed_trades", ())] == 0
    for component in ("broker", "market_data", "news", "forecaster"):
        assert got[("kronos_bot_degraded", (("component", component),))] == 0
    assert any(name == "kronos_bot_info" for name, _ in got)
    reasons = {dict(labels)["reason"] for name, labels in got if name == "kronos_bot_decision_reasons_total"}
    assert reasons and "kronos_not_up" in reasons


def test_a_degraded_part_shows_in_the_gauge_and_a_close_in_the_exit_counter(tmp_path: Path, fake_alpaca) -> None:
    parts, clock = traded_parts(tmp_path, fake_alpaca)
    try:
        parts.health.set("forecaster", "scripted outage")
        position = parts.journal.open_positions()[0]
        clock.now += timedelta(minutes=1)
        parts.executor.exit(position, reason=_stop_loss(), price=position.entry_price * D("0.9"), now=clock.now)
        got = samples(_render(parts))
        assert got[("kronos_bot_degraded", (("component", "forecaster"),))] == 1
        assert got[("kronos_bot_exits_total", (("reason", "stop_loss"),))] == 1
        assert got[("kronos_bot_closed_trades", ())] == 1 and got[("kronos_bot_realized_pnl_usd", ())] < 0
        parts.health.clear("forecaster")
        assert samples(_render(parts))[("kronos_bot_degraded", (("component", "forecaster"),))] == 0
    finally:
        parts.close()


def _render(parts: Any) -> str:
    from prometheus_client import generate_latest

    return generate_latest(parts.metrics.registry).decode()


def _stop_loss() -> Any:
    from kronos_bot.trader.stops import ExitReason

    return ExitReason.STOP_LOSS


def test_metrics_need_the_token_when_one_is_set_and_serve_nothing_else() -> None:
    from prometheus_client import CollectorRegistry

    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, token="s3cret-token")
    try:
        assert server.start()
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 401
        wrong = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret-token"}, timeout=5).is_success
        assert httpx.get(f"{base}/", headers={"Authorization": "Bearer s3cret-token"}, timeout=5).status_code == 404
    finally:
        server.stop()


def test_a_port_in_use_is_logged_and_the_trader_goes_on() -> None:
    from prometheus_client import CollectorRegistry

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with captured_logs() as logs:
            assert not MetricsServer(CollectorRegistry(), "127.0.0.1", port).start()
    (event,) = [e for e in logs if e["event"] == "metrics.unavailable"]
    assert event["port"] == port and event["log_level"] == "error"


def test_metrics_off_loopback_refuse_to_start_without_a_token(tmp_path: Path) -> None:
    from kronos_bot.config import ConfigError, load_settings

    config = write_settings(tmp_path, None, metrics={"host": "0.0.0.0"})
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert "metrics.host: 0.0.0.0 is reachable from outside" in str(err.value)


# ----- events -----


class Exploding(NoEvents):
    def cycle_finished(self, event: Any) -> None:
        raise RuntimeError("listener bug")


def test_a_failing_listener_never_reaches_the_cycle_and_is_logged_once(tmp_path: Path, fake_alpaca) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = build_trader_parts(
        settings_for(tmp_path, fake_alpaca.base_url), clock=clock, forecaster_factory=lambda: ScriptedForecaster()
    )
    parts.events.add(Exploding())
    try:
        with captured_logs() as logs:
            first = parts.cycle.run(trade=False)
            clock.now += timedelta(hours=1)
            second = parts.cycle.run(trade=False)
    finally:
        parts.close()
    assert first.status == "ok" and second.status == "ok"
    failures = [e for e in logs if e["event"] == "events.listener_failed"]
    assert [e["log_level"] for e in failures] == ["error", "debug"]
    assert failures[0]["listener"] == "Exploding" and failures[0]["trader_event"] == "cycle_finished"


def test_event_hub_forwards_to_every_listener() -> None:
    heard: list[str] = []

    class Ear(NoEvents):
        def trader_started(self, event: TraderStarted) -> None:
            heard.append(event.mode)

    hub = EventHub([Ear(), Exploding(), Ear()])
    hub.trader_started(TraderStarted("paper", "alpaca", ("BTC/USD",), 0))
    assert heard == ["paper", "paper"]


# ----- status -----


def status_json(config: Path) -> dict[str, Any]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["status", "--config", str(config), "--json"]) == 0
    return json.loads(out.getvalue())


def status_text(config: Path) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["status", "--config", str(config)]) == 0
    return out.getvalue()


def test_status_on_an_empty_journal(tmp_path: Path, fake_alpaca) -> None:
    from kronos_bot.trader.journal import Journal

    config = write_settings(tmp_path, fake_alpaca.base_url)
    Journal(tmp_path / "journal.sqlite").close()
    doc = status_json(config)
    assert doc["mode"] == "dry-run" and doc["positions"] == [] and doc["last_cycle"] is None
    assert doc["pnl"] == {
        "today": "0",
        "last_7_days": "0",
        "all_time": "0",
        "closed_trades": 0,
        "wins": 0,
        "win_rate": None,
    }
    assert doc["trader"]["state"] == "never started with this journal"
    assert doc["account"]["equity"] == "10000" or Decimal(doc["account"]["equity"]) == 10_000
    assert doc["next_cycle"] is not None
    text = status_text(config)
    assert "open positions: none" in text and "account: equity $10,000.00" in text


def test_status_with_an_open_position_and_a_running_trader(tmp_path: Path, fake_alpaca) -> None:
    parts, _clock = traded_parts(tmp_path, fake_alpaca)
    daemon = TraderDaemon(parts)
    daemon._announce_start()
    parts.health.set("news", "scripted news outage")
    config = tmp_path / "bot.yaml"
    try:
        doc = status_json(config)
        text = status_text(config)
    finally:
        parts.close()
    assert doc["trader"]["state"] == "running" and doc["trader"]["mode"] == "dry-run"
    (row,) = doc["positions"]
    assert row["symbol"] == "BTC/USD" and row["tier"] == "kronos_only"
    assert row["backstop_order_id"] and Decimal(row["backstop_stop"]) > 0
    assert row["price"] is not None and row["unrealized_pct"] is not None and row["age_hours"] >= 0
    assert doc["last_cycle"]["status"] == "ok" and doc["last_cycle"]["decisions"] == {"ENTER": 1, "SKIP": 3}
    assert doc["degraded"]["news"]["reason"] == "scripted news outage"
    assert Decimal(doc["account"]["equity"]) > 0 and doc["account"]["source"] == "broker"
    assert "running (pid" in text and "degraded: news since" in text and "1 ENTER, 3 SKIP" in text
    assert "backstop order" in text and "kronos_only" in text
    # money to cents in the text; full precision in JSON
    line = next(x for x in text.splitlines() if x.startswith("account:"))
    assert "$" in line and all(len(part.split(".")[-1].split()[0]) == 2 for part in line.split("$")[1:])


def test_status_with_the_broker_and_the_forecaster_down(tmp_path: Path, fake_alpaca, monkeypatch) -> None:
    # Alpaca keys pointed at a port that refuses connections; the forecaster's socket does not exist.
    parts, _clock = traded_parts(tmp_path, fake_alpaca)
    parts.close()
    config = write_settings(
        tmp_path,
        "http://127.0.0.1:9",
        forecaster={"mode": "service", "socket_path": str(tmp_path / "none.sock")},
        broker={"kind": "alpaca"},
    )
    monkeypatch.setenv("ALPACA_API_KEY", "PKTESTKEY123")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "testsecret123")
    started = time.monotonic()
    doc = status_json(config)
    text = status_text(config)
    elapsed = time.monotonic() - started
    assert doc["mode"] == "paper" and {"broker", "forecaster", "market_data"} <= set(doc["down"])
    assert doc["positions"][0]["symbol"] == "BTC/USD"  # what the journal knows is still there
    # the account falls back on the trader's last reading, and says so
    assert doc["account"]["source"].startswith("the trader's reading at")
    assert "down: broker" in text and "down: forecaster" in text and "Traceback" not in text
    assert elapsed < 20  # two runs; each is bounded by its 4 s deadline (generous for a busy host)


def test_a_trader_that_died_is_reported_gone(tmp_path: Path, fake_alpaca) -> None:
    from kronos_bot.trader.journal import Journal

    config = write_settings(tmp_path, fake_alpaca.base_url)
    with Journal(tmp_path / "journal.sqlite") as journal:
        journal.set_runtime_state("trader", {"state": "running", "pid": 2**22 + 12345, "mode": "dry-run"})
        journal.set_runtime_state("degraded", {"active": {"broker": {"reason": "x", "since": CYCLE_NOW.isoformat()}}})
    doc = status_json(config)
    assert doc["trader"]["state"] == "gone" and doc["degraded"] == {}
    assert "is gone (crashed or killed" in status_text(config)


# ----- notifications of a real cycle -----


@pytest.fixture
def receiver() -> Any:
    from tests.test_notify import Receiver

    box = Receiver()
    yield box
    box.close()


def titles(receiver: Any) -> list[str]:
    return [body.get("title", "") for _path, body in receiver.requests]


def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_trading_cycle_delivers_the_entry_and_exit_notifications(
    tmp_path: Path, fake_alpaca, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRONOS_BOT_NOTIFY_URLS", receiver.url("ok"))
    parts, clock = traded_parts(tmp_path, fake_alpaca)
    daemon = TraderDaemon(parts)
    try:
        assert wait_for(lambda: any("bought BTC/USD" in t for t in titles(receiver)))
        # The market falls 5 %: the exit monitor sells at its stop, and the close is pushed too.
        position = parts.journal.open_positions()[0]
        fallen = float(position.entry_price) * 0.95
        fake_alpaca.trading.set_price("BTC/USD", f"{fallen:.2f}")
        for _tick in range(3):
            clock.now += timedelta(seconds=30)
            fake_alpaca.market.set_latest_trade("BTC/USD", fallen, ts=clock.now)
            run_exit_check(parts)
        assert parts.journal.open_positions() == []
        assert wait_for(lambda: any(t.startswith("kronos-bot: sold BTC/USD -$") for t in titles(receiver)))
        daemon._announce_start()
        daemon.daily_summary_job()
        assert wait_for(lambda: len(receiver.requests) >= 3)
    finally:
        daemon._close()  # says it stopped, and lets the queue drain (bounded)
    got = titles(receiver)
    assert any(t.startswith("kronos-bot started (dry-run)") for t in got)
    assert any(t.startswith("kronos-bot daily") for t in got)
    assert any(t.startswith("kronos-bot stopped") for t in got)
    opened = next(body for _p, body in receiver.requests if "bought BTC/USD" in body["title"])
    assert "kronos_only" in opened["message"] and "stop" in opened["message"]
    closed = next(body for _p, body in receiver.requests if "sold BTC/USD" in body["title"])
    assert "P&L -$" in closed["message"] and "held" in closed["message"] and closed["type"] == "warning"
    stopped = next(body for _p, body in receiver.requests if body["title"].startswith("kronos-bot stopped"))
    assert stopped["message"].startswith("stopped:")


def test_a_hanging_notifier_never_delays_the_cycle(
    tmp_path: Path, fake_alpaca, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRONOS_BOT_NOTIFY_URLS", receiver.url("hang"))
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = build_trader_parts(
        settings_for(tmp_path, fake_alpaca.base_url, notify={"timeout_seconds": 5, "max_attempts": 3}),
        clock=clock,
        forecaster_factory=lambda: ScriptedForecaster({"BTC/USD": 0.02}),
    )
    try:
        started = time.monotonic()
        report = parts.cycle.run(trade=True)
        took = time.monotonic() - started
        assert [e.status for e in report.entries] == ["opened"]
        assert wait_for(lambda: receiver.paths() != [])  # the message is on its way, and hangs there
    finally:
        closing = time.monotonic()
        parts.close()
        closed_in = time.monotonic() - closing
    # A send on the trading path would have held the cycle for a 5 s timeout at least (x 3 attempts).
    assert took < 5
    assert closed_in < 5 + 2  # NOTIFY_CLOSE_SECONDS, then the trader exits whatever the URL does


# ----- the documentation of the metrics -----


def test_documented_and_dashboard_metrics_exist(tmp_path: Path) -> None:
    import re

    from prometheus_client import generate_latest

    from kronos_bot.trader.journal import Journal
    from kronos_bot.trader.metrics import TraderMetrics
    from tests.conftest import REPO_ROOT

    with Journal(tmp_path / "j.sqlite") as journal:
        metrics = TraderMetrics(journal, skill_summary=lambda: {"n": 5, "hit_rate": 0.5, "brier": 0.25})
        exposed = {f.name for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    forecaster_source = (REPO_ROOT / "src" / "kronos_bot" / "forecaster" / "metrics.py").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    dashboard = (REPO_ROOT / "contrib" / "grafana-dashboard.json").read_text()
    documented = set(re.findall(r"`(kronos_(?:bot|forecaster)_[a-z0-9_]+)`", readme))
    used = {re.sub(r"_(bucket|total)$", "", n) for n in re.findall(r"kronos_(?:bot|forecaster)_[a-z0-9_]+", dashboard)}
    for name in documented | used:
        base = re.sub(r"_(total|info)$", "", name)
        if name.startswith("kronos_bot_"):
            assert exposed & {name, base}, f"{name} is documented or graphed but the trader does not expose it"
        else:
            assert base.removeprefix("kronos_forecaster_") in forecaster_source, name
    assert {f"kronos_bot_{n}" for n in ("equity_usd", "open_positions", "degraded")} <= documented


def test_status_text_is_rounded_for_reading() -> None:
    from kronos_bot.trader.status_report import percent_text, price_text, status_lines

    assert price_text("95056.314260000", D("0.000000001")) == "95,056.31"  # a fine increment never spells 9 places
    assert price_text("95056.6", D("1")) == "95,057"  # a coarse one wins
    assert price_text("0.387123456") == "0.387123" and price_text("0.387123456", D("0.00001")) == "0.38712"
    assert percent_text("-0.001") == "0.00 %" and percent_text("0.404") == "+0.40 %"
    doc = {
        "mode": "paper",
        "broker": "alpaca",
        "trader": {"state": "never started with this journal"},
        "account": None,
        "pnl": {"today": "0", "last_7_days": "0", "all_time": "0", "closed_trades": 0, "wins": 0, "win_rate": None},
        "last_cycle": None,
        "next_cycle": None,
        "forecaster": {"mode": "inprocess", "detail": "in process"},
        "degraded": {"broker": {"since": None, "reason": "APIError:\n" + "Traceback line\n" * 100}},
        "down": {"account": "x" * 1000},
        "skill": {"line": "no scored forecasts yet"},
        "positions": [],
    }
    lines = status_lines(doc)
    assert all(len(line) < 220 for line in lines), lines
    assert any(line.startswith("degraded: broker") and line.endswith("...") for line in lines)
