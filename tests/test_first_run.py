"""A first run that explains itself (#15): banner, a cycle on start, heartbeat, outages in words and once,
cycle status by what happened, one encoding for every log value, third-party warnings once."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog

from kronos_bot.logs import configure_logging
from kronos_bot.retry import describe_transport_error
from kronos_bot.trader.daemon import TraderDaemon, build_trader_parts, run_exit_check
from tests.process_support import Proc
from tests.test_trader_cycle import Clock
from tests.trader_support import CYCLE_NOW, JsonLogs, ScriptedForecaster, load_market, settings_for, write_settings

CLOSED_PORT = "http://127.0.0.1:9"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def parts_for(tmp_path: Path, url: str | None, clock: Clock, forecaster: ScriptedForecaster, **sections: Any) -> Any:
    settings = settings_for(tmp_path, url, **sections)
    return build_trader_parts(settings, clock=clock, forecaster_factory=lambda: forecaster)


# ----- one encoding for every value; readable key order -----


def test_no_event_of_a_trading_cycle_carries_a_python_repr(tmp_path: Path, fake_alpaca: Any) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = parts_for(tmp_path, fake_alpaca.base_url, clock, ScriptedForecaster({"BTC/USD": 0.02}))
    try:
        with JsonLogs() as captured:
            report = parts.cycle.run(trade=True)
            clock.now += timedelta(minutes=1)
            run_exit_check(parts)
            TraderDaemon(parts).heartbeat_job()
        text = captured.stream.getvalue()
    finally:
        parts.close()
    assert [e.status for e in report.entries] == ["opened"]
    events = [json.loads(line) for line in text.splitlines()]
    names = {e["event"] for e in events}
    assert {"order.submitted", "position.opened", "decision", "cycle.end", "heartbeat"} <= names
    assert "Decimal(" not in text and "datetime." not in text and "<" not in text
    opened = next(e for e in events if e["event"] == "position.opened")
    assert Decimal(opened["qty"]) > 0 and isinstance(opened["qty"], str) and "E" not in opened["qty"]
    submitted = next(e for e in events if e["event"] == "order.submitted")
    assert submitted["notional"] == "60.00" or Decimal(submitted["notional"]) == Decimal(submitted["notional"])
    assert list(events[0])[:3] == ["ts", "level", "event"]
    decision = next(e for e in events if e["event"] == "decision")
    assert list(decision)[:5] == ["ts", "level", "event", "symbol", "action"]


def test_console_lines_start_with_time_level_event_symbol_action() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="console", stream=stream)
    try:
        structlog.get_logger("t").info(
            "decision", zeta=1, reasons=["a"], action="SKIP", symbol="BTC/USD", notional=Decimal("60.00")
        )
    finally:
        structlog.reset_defaults()
    line = stream.getvalue().strip()
    assert line.index("decision") < line.index("symbol=BTC/USD") < line.index("action=SKIP") < line.index("zeta=")
    assert "notional=60.00" in line and "Decimal" not in line


def test_third_party_warnings_are_logged_once_through_structlog(capsys: pytest.CaptureFixture[str]) -> None:
    import huggingface_hub  # noqa: F401  (attaches its own stream handler on import)

    from kronos_bot.logs import adopt_library_logger

    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    adopt_library_logger("huggingface_hub")  # what kronos.hub does after importing it
    try:
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library's UserWarning", UserWarning, stacklevel=1)
    finally:
        structlog.reset_defaults()
        logging.captureWarnings(False)
    lines = stream.getvalue().splitlines()
    assert sum("Retrying in 1s" in line for line in lines) == 1
    assert sum("a library's UserWarning" in line for line in lines) == 1
    assert all(line.startswith("{") for line in lines)
    err = capsys.readouterr().err
    assert "Retrying in 1s" not in err and "UserWarning" not in err  # never a second, raw copy


# ----- outages: the cause in words, once -----


def test_transport_errors_are_described_in_words() -> None:
    import httpx
    import requests

    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"{CLOSED_PORT}/v2/account", timeout=2)
    assert describe_transport_error(refused.value) == "connection refused by 127.0.0.1:9"
    with pytest.raises(requests.ConnectionError) as unknown:
        requests.get("http://kronos-bot-test.invalid/", timeout=2)
    assert describe_transport_error(unknown.value).startswith("DNS lookup failed for kronos-bot-test.invalid")
    with pytest.raises(httpx.ConnectError) as missing:
        httpx.Client(transport=httpx.HTTPTransport(uds="/nonexistent/f.sock")).get("http://x/healthz")
    assert describe_transport_error(missing.value, "unix:/nonexistent/f.sock") == (
        "no socket at unix:/nonexistent/f.sock (is the service running?)"
    )


def test_market_data_down_is_said_once_in_words_and_the_cycle_failed(tmp_path: Path) -> None:
    clock = Clock(CYCLE_NOW)
    parts = parts_for(
        tmp_path,
        None,
        clock,
        ScriptedForecaster(),
        bars={"data_url_override": CLOSED_PORT, "max_attempts": 2, "backoff_seconds": 0.0},
    )
    try:
        with JsonLogs() as captured:
            first = parts.cycle.run(trade=True)
            clock.now += timedelta(minutes=15)
            second = parts.cycle.run(trade=True)
        events = captured.events
    finally:
        parts.close()
    assert first.status == second.status == "failed"
    ends = [e for e in events if e["event"] == "cycle.end"]
    assert [e["status"] for e in ends] == ["failed", "failed"]
    loud = [e for e in events if e["level"] in ("warning", "error")]
    starts = [e for e in loud if e["event"] == "degraded.start"]
    assert [e["component"] for e in starts] == ["market_data"]
    assert "connection refused by 127.0.0.1:9" in starts[0]["reason"]
    # The first cycle says what failed (a retry, the fetch); the second repeats nothing at warning level.
    second_start = next(i for i, e in enumerate(events) if e["event"] == "cycle.start" and e is not events[0])
    assert [e["event"] for e in events[second_start:] if e["level"] in ("warning", "error")] == []
    assert [e for e in events if e["event"] == "data.invalid"] == []


def test_cycle_status_ok_and_partial(tmp_path: Path, fake_alpaca: Any) -> None:
    load_market(fake_alpaca)
    fine = parts_for(tmp_path, fake_alpaca.base_url, Clock(CYCLE_NOW), ScriptedForecaster({"BTC/USD": 0.02}))
    down = ScriptedForecaster({"BTC/USD": 0.02})
    down.down = True
    (tmp_path / "down").mkdir()
    broken = parts_for(tmp_path / "down", fake_alpaca.base_url, Clock(CYCLE_NOW), down)
    try:
        assert fine.cycle.run(trade=False).status == "ok"
        report = broken.cycle.run(trade=False)
    finally:
        fine.close()
        broken.close()
    assert report.status == "partial"  # decisions made, without Kronos
    assert all("kronos_unavailable" in d.reasons for d in report.decisions)


# ----- the banner, the cycle on start, the heartbeat -----


def test_banner_names_what_runs_and_when_the_first_cycle_comes(tmp_path: Path, fake_alpaca: Any) -> None:
    minute = (datetime.now(UTC).minute + 30) % 60  # the scheduled cycle is ~30 minutes away
    parts = parts_for(
        tmp_path, fake_alpaca.base_url, Clock(CYCLE_NOW), ScriptedForecaster(), schedule={"entry_minutes": str(minute)}
    )
    terminal = Terminal()
    try:
        daemon = TraderDaemon(parts)
        with JsonLogs() as captured:
            before = datetime.now(UTC)
            daemon.announce_banner(terminal)
        (banner,) = [e for e in captured.events if e["event"] == "trader.banner"]
        daemon.schedule()
        entry = daemon.scheduler.get_job("entry")
    finally:
        parts.close()
    assert banner["mode"] == "dry-run" and banner["broker"] == "sim" and banner["symbols"][0] == "BTC/USD"
    assert banner["journal"].endswith("journal.sqlite") and "NeoQuasar/Kronos-small" in banner["model"]
    first = datetime.fromisoformat(banner["next_entry_cycle"])
    assert timedelta(0) <= first - before < timedelta(seconds=10)  # run_on_start: right away
    assert datetime.fromisoformat(banner["next_exit_tick"]) - before < timedelta(seconds=5)
    text = terminal.getvalue()
    assert "DRY-RUN" in text and "next entry" in text and "(run on start)" in text and "journal" in text
    assert entry.next_run_time is not None and entry.next_run_time - before < timedelta(seconds=10)


def test_no_extra_cycle_when_a_scheduled_one_is_due_within_a_minute(tmp_path: Path, fake_alpaca: Any) -> None:
    parts = parts_for(
        tmp_path, fake_alpaca.base_url, Clock(CYCLE_NOW), ScriptedForecaster(), schedule={"entry_interval_seconds": 30}
    )
    (tmp_path / "off").mkdir()
    off = parts_for(
        tmp_path / "off",
        fake_alpaca.base_url,
        Clock(CYCLE_NOW),
        ScriptedForecaster(),
        schedule={"entry_minutes": str((datetime.now(UTC).minute + 30) % 60), "run_on_start": False},
    )
    try:
        now = datetime.now(UTC)
        soon, _ = TraderDaemon(parts).first_runs()
        assert soon is not None and timedelta(seconds=25) <= soon - now <= timedelta(seconds=31)
        later, _ = TraderDaemon(off).first_runs()
        assert later is not None and later - now > timedelta(minutes=25)
    finally:
        parts.close()
        off.close()


def test_heartbeat_says_positions_degraded_parts_and_next_cycle(tmp_path: Path, fake_alpaca: Any) -> None:
    load_market(fake_alpaca)
    clock = Clock(CYCLE_NOW)
    parts = parts_for(tmp_path, fake_alpaca.base_url, clock, ScriptedForecaster({"BTC/USD": 0.02}))
    try:
        parts.cycle.run(trade=True)
        parts.health.set("news", "scripted news outage")  # after the cycle, which would clear it
        daemon = TraderDaemon(parts)
        daemon.schedule()
        with JsonLogs() as captured:
            daemon.heartbeat_job()
        (beat,) = [e for e in captured.events if e["event"] == "heartbeat"]
    finally:
        parts.close()
    assert beat["open_positions"] == 1 and beat["symbols_held"] == ["BTC/USD"]
    assert beat["degraded"] == ["news"] and beat["last_cycle_status"] == "ok"
    assert beat["next_cycle"] is not None and beat["uptime_seconds"] >= 0


# ----- the Hub: one DNS lookup decides, the fix is said -----


def test_an_unresolvable_hub_fails_at_once_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kronos_bot.kronos.hub import ModelLoadError, resolve_checkpoint

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_dns(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as failed:
        resolve_checkpoint(
            "NeoQuasar/Kronos-small",
            revision="901c26c1332695a2a8f243eb2f37243a37bea320",
            cache_dir=tmp_path,
            local_files_only=False,  # the suite may run with HF_HUB_OFFLINE set
        )
    assert time.monotonic() - started < 5  # not huggingface_hub's five retries (~24 s)
    message = str(failed.value)
    assert "DNS lookup of huggingface.co failed" in message
    assert "kronos-bot download-model" in message and "forecaster.model" in message


# ----- the whole first run, offline, as a process -----


@pytest.mark.e2e
def test_an_offline_first_run_explains_itself(tmp_path: Path) -> None:
    config = write_settings(
        tmp_path,
        CLOSED_PORT,
        forecaster={"mode": "inprocess", "model": "NeoQuasar/Kronos-small"},
        bars={"max_attempts": 2, "backoff_seconds": 0.0},
        metrics={"enabled": False},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_", "HF_"))}
    env.update(
        KRONOS_BOT_CONFIG=str(config),
        HF_ENDPOINT="http://kronos-bot-test.invalid",  # no Hub, whatever network the machine has
        HF_HOME=str(tmp_path / "hf"),
        PYTHONUNBUFFERED="1",
    )
    trader = Proc("first-run", ["run"], env, tmp_path)
    try:
        trader.wait_for(lambda ev: [e for e in ev if e.get("event") == "cycle.end"], 60, "a first cycle")
    finally:
        code = trader.stop(signal.SIGTERM, timeout=30)
    text = trader.log_path.read_text()
    events = trader.events()
    names = [e["event"] for e in events]
    assert code == 0 and "Traceback" not in text
    banner = next(e for e in events if e["event"] == "trader.banner")
    assert names.index("trader.banner") < min(names.index("cycle.start"), names.index("trader.ready"))
    assert banner["mode"] == "dry-run" and banner["next_entry_cycle"]
    started = datetime.fromisoformat(banner["ts"])
    cycle_end = next(e for e in events if e["event"] == "cycle.end")
    assert datetime.fromisoformat(cycle_end["ts"]) - started < timedelta(seconds=60)
    assert cycle_end["status"] == "failed"  # no market data at all
    degraded = {e["component"]: e for e in events if e["event"] == "degraded.start"}
    assert set(degraded) >= {"market_data", "forecaster"}
    assert "DNS lookup of kronos-bot-test.invalid failed" in degraded["forecaster"]["reason"]
    assert "download-model" in degraded["forecaster"]["reason"]
    assert "connection refused by 127.0.0.1:9" in degraded["market_data"]["reason"]
    assert "network" in degraded["market_data"]["fix"]
    assert not any(line and not line.startswith("{") for line in text.splitlines()), "a raw, non-JSON line"
    assert sys.executable  # the subprocess used this venv's entry point (tests.process_support)
