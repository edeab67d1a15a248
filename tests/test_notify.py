"""Notifications: the texts (pure), and delivery through apprise's json:// plugin to a receiver on 127.0.0.1.

The receiver records what apprise POSTs ({"version", "title", "message", "attachments", "type"}); its
`/hang` path answers only after the client has given up, which is how a dead endpoint looks. Waits are
bounded polls, never fixed sleeps; the timing bounds asserted are generous.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kronos_bot import cli
from kronos_bot.config import NotifyEventSwitches, NotifySettings, load_settings
from kronos_bot.notify import messages
from kronos_bot.notify.listener import Notifications, notifications_from_settings
from kronos_bot.notify.messages import Message
from kronos_bot.notify.sender import NotificationSender, masked_url
from kronos_bot.trader.events import DailySummary, DegradedChange, TraderStarted
from kronos_bot.trader.records import PositionRecord
from tests.broker_support import captured_logs
from tests.conftest import SHIPPED_CONFIG

D = Decimal
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "SECRETTOKEN"
# Long enough that every client gives up first; the receiver is released at teardown.
HANG_SECONDS = 10.0


class Receiver:
    """A JSON webhook on 127.0.0.1: records each POST (path, body); `/hang` never answers in time."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                receiver.requests.append((self.path, body))
                if self.path.startswith("/hang"):
                    receiver.release.wait(HANG_SECONDS)
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up long ago

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str = "ok") -> str:
        return f"json://user:{SECRET}@127.0.0.1:{self.port}/{path}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def fast(**overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {"timeout_seconds": 0.3, "max_attempts": 2, "backoff_seconds": 0.05, **overrides}
    return NotifySettings(**values)


def events_named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def position(**overrides: Any) -> PositionRecord:
    base: dict[str, Any] = {
        "id": 1,
        "symbol": "BTC/USD",
        "status": "open",
        "tier": "triple_confirmed",
        "external": False,
        "decision_id": 1,
        "entry_client_order_id": "kb-1",
        "entry_time": T0,
        "entry_price": D("97412.345"),
        "entry_filled_qty": D("0.00102"),
        "entry_cost": D("99.3606"),
        "entry_fee": D("0"),
        "qty": D("0.00102"),
        "hwm": D("97412.345"),
        "stop_price": D("95464.10"),
        "trail_armed": False,
        "backstop_order_id": None,
        "backstop_client_order_id": None,
        "backstop_stop": None,
        "backstop_seq": 0,
        "exit_time": None,
        "exit_price": None,
        "exit_qty": None,
        "exit_reason": None,
        "exit_fee": None,
        "proceeds": None,
        "pnl": None,
        "pnl_percent": None,
        "updated_at": T0,
    }
    return PositionRecord(**{**base, **overrides})


def closed(pnl: str, reason: str = "trailing_stop", pnl_percent: str | None = None) -> PositionRecord:
    return position(
        status="closed",
        exit_time=T0 + timedelta(hours=5, minutes=12),
        exit_price=D("100530"),
        exit_reason=reason,
        pnl=D(pnl),
        pnl_percent=D(pnl_percent) if pnl_percent else D(pnl) / D("99.3606") * 100,
    )


class RecordingSender(NotificationSender):
    """A sender without URLs that keeps what it is given (the listener's decisions, no network)."""

    def __init__(self, settings: NotifySettings) -> None:
        super().__init__([], settings)
        self.submitted: list[Message] = []

    def submit(self, message: Message) -> bool:
        self.submitted.append(message)
        return True


# ----- the texts -----


def test_position_opened_names_fill_qty_cost_and_stop() -> None:
    message = messages.position_opened(position())
    assert message.event == "position_opened" and message.level == "info"
    assert message.title == "kronos-bot: bought BTC/USD"
    assert message.body == (
        "BTC/USD bought (triple_confirmed)\n"
        "fill 97,412.35 x 0.00102 = $99.36\n"
        "stop 95,464.10 (-2.00%)\n"
        "2025-03-01 12:00 UTC"
    )


def test_position_closed_shows_reason_pnl_and_hold_time() -> None:
    message = messages.position_closed(closed("3.21", pnl_percent="3.2306"))
    assert message.level == "info"
    assert message.title == "kronos-bot: sold BTC/USD +$3.21 (+3.23%)"
    assert "BTC/USD closed: trailing_stop" in message.body
    assert "exit 100,530.00 (entry 97,412.35)" in message.body
    assert "P&L +$3.21 (+3.23%)" in message.body
    assert "held 5h 12m" in message.body
    assert "2025-03-01 17:12 UTC" in message.body


@pytest.mark.parametrize(
    ("pnl", "reason", "level"),
    [
        ("3.21", "trailing_stop", "info"),
        ("3.21", "max_hold", "info"),
        ("-0.50", "trailing_stop", "warning"),
        ("1.00", "stop_loss", "warning"),
        ("1.00", "backstop", "warning"),
        ("0.00", "external", "warning"),
    ],
)
def test_a_losing_or_unplanned_close_is_a_warning(pnl: str, reason: str, level: str) -> None:
    assert messages.position_closed(closed(pnl, reason)).level == level


def test_a_close_without_price_or_pnl_still_renders() -> None:
    record = position(status="closed", exit_reason="external", exit_time=T0 + timedelta(minutes=3))
    message = messages.position_closed(record)
    assert "exit unknown" in message.body and "P&L unknown" in message.body and "held 3m" in message.body


def test_degraded_start_and_end() -> None:
    down = messages.degraded(DegradedChange("forecaster", True, "connect timeout", T0, T0))
    assert down.level == "warning" and down.title == "kronos-bot: forecaster degraded"
    assert down.body == "forecaster is down: connect timeout\nsince 2025-03-01 12:00 UTC"
    back = messages.degraded(
        DegradedChange("forecaster", False, "connect timeout", T0, T0 + timedelta(minutes=12), 720.0)
    )
    assert back.level == "info" and back.title == "kronos-bot: forecaster back"
    assert "forecaster is back after 12m" in back.body and "it was: connect timeout" in back.body


def test_a_traceback_in_an_outage_reason_is_cut_to_one_short_line() -> None:
    reason = 'APIError: {"message": "boom\nTraceback (most recent call last):\n' + "  File x, line 1\n" * 200
    down = messages.degraded(DegradedChange("broker", True, reason, T0, T0))
    first = down.body.splitlines()[0]
    assert first.startswith("broker is down: APIError:") and first.endswith("...")
    assert len(first) <= len("broker is down: ") + messages.REASON_CHARS and len(down.body.splitlines()) == 2


def test_trader_started_and_stopped() -> None:
    started = messages.trader_started(TraderStarted("paper", "alpaca", ("BTC/USD", "ETH/USD"), 1, ("news",)))
    assert started.level == "info" and started.title == "kronos-bot started (paper)"
    assert started.body == "mode paper, broker alpaca\nsymbols BTC/USD, ETH/USD\n1 open position\ndegraded: news"
    left = messages.trader_stopped("SIGTERM", 2)
    assert left.level == "warning"
    assert left.body == "stopped: SIGTERM\n2 open positions, protected by broker-side stops"
    clean = messages.trader_stopped("SIGTERM", 0)
    assert clean.level == "info" and "no open positions" in clean.body


def test_daily_summary_has_pnl_trades_equity_positions_and_skill() -> None:
    summary = DailySummary(
        day="2025-03-01",
        realized_pnl=D("12.345"),
        trades=3,
        wins=2,
        open_positions=(position(), position(symbol="DOGE/USD", entry_price=D("0.0812345678"), qty=D("1200"))),
        equity=D("1012.3449"),
        skill_line="hit 58% (n=41), BSS +0.04",
    )
    message = messages.daily_summary(summary)
    assert message.level == "info" and message.title == "kronos-bot daily 2025-03-01: +$12.35"
    assert "realized +$12.35, 3 trades, 2 won (67%)" in message.body
    assert "equity $1,012.34" in message.body
    assert "open (2):" in message.body
    assert "BTC/USD 0.00102 @ 97,412.35, stop 95,464.10" in message.body
    assert "DOGE/USD 1200 @ 0.0812346" in message.body
    assert "forecast skill: hit 58% (n=41), BSS +0.04" in message.body
    quiet = messages.daily_summary(DailySummary(day="2025-03-02", realized_pnl=D(0), trades=0, wins=0))
    assert "no trades closed" in quiet.body and "no open positions" in quiet.body and "equity" not in quiet.body


def test_prices_and_money_are_rounded_for_a_phone() -> None:
    assert messages.price(D("97412.345")) == "97,412.35"
    assert messages.price(D("1")) == "1.00"
    assert messages.price(D("0.0812345678")) == "0.0812346"
    assert messages.price(D("0.0000123456789")) == "0.0000123457"
    assert messages.usd(D("-1234.565")) == "-$1,234.57"
    assert messages.signed_usd(D("-0.004")) == "$0.00"
    assert messages.duration(86400 * 2 + 3600 * 4) == "2d 4h"


# ----- the listener's decisions -----


def test_switched_off_events_and_min_level_are_not_submitted() -> None:
    settings = NotifySettings(events=NotifyEventSwitches(position_opened=False), min_level="warning")
    sender = RecordingSender(settings)
    listener = Notifications(sender, settings)
    listener.position_opened(position())  # switched off
    listener.position_closed(closed("3.21"))  # info < warning
    listener.position_closed(closed("-3.21"))  # a loss: warning
    listener.trader_stopped("SIGTERM", 0)  # info
    assert [(m.event, m.level) for m in sender.submitted] == [("position_closed", "warning")]
    disabled = NotifySettings(enabled=False)
    off = RecordingSender(disabled)
    Notifications(off, disabled).position_closed(closed("-3.21"))
    assert off.submitted == []


def test_a_message_that_cannot_be_built_is_logged_not_raised() -> None:
    settings = NotifySettings()
    sender = RecordingSender(settings)
    broken = position(entry_time=None)
    with captured_logs() as logs:
        Notifications(sender, settings).position_opened(broken)
    assert sender.submitted == []
    assert [e["notify_event"] for e in events_named(logs, "notify.format_failed")] == ["position_opened"]


def test_factory_needs_urls_and_enabled(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    assert notifications_from_settings(load_settings(SHIPPED_CONFIG)) is None
    monkeypatch.setenv("KRONOS_BOT_NOTIFY_URLS", f"{receiver.url()}, json://127.0.0.1:9/")
    listener = notifications_from_settings(load_settings(SHIPPED_CONFIG))
    assert listener is not None and len(listener.sender.targets) == 2
    listener.close(0.1)
    monkeypatch.setenv("KRONOS_BOT__NOTIFY__ENABLED", "false")
    assert notifications_from_settings(load_settings(SHIPPED_CONFIG)) is None


# ----- delivery -----


def test_a_submitted_message_arrives_as_apprise_json(receiver: Receiver) -> None:
    settings = fast()
    listener = Notifications(NotificationSender([receiver.url("hook")], settings), settings)
    listener.position_opened(position())
    assert wait_until(lambda: len(receiver.requests) == 1)
    path, body = receiver.requests[0]
    assert path == "/hook"
    assert body == {
        "version": "1.0",
        "title": "kronos-bot: bought BTC/USD",
        "message": messages.position_opened(position()).body,
        "attachments": [],
        "type": "info",
    }
    listener.position_closed(closed("-1"))
    assert wait_until(lambda: len(receiver.requests) == 2)
    assert receiver.requests[1][1]["type"] == "warning"
    listener.close(1.0)


def test_a_hanging_url_never_delays_submit_and_fails_once_masked(receiver: Receiver) -> None:
    sender = NotificationSender([receiver.url("hang")], fast())
    with captured_logs() as logs:
        started = time.monotonic()
        accepted = sender.submit(messages.trader_stopped("SIGTERM", 1))
        assert time.monotonic() - started < 0.05
        assert accepted
        assert wait_until(lambda: bool(events_named(logs, "notify.failed")))
        sender.close(1.0)
    failed = events_named(logs, "notify.failed")
    assert len(failed) == 1
    assert failed[0]["attempts"] == 2 and failed[0]["notify_event"] == "trader_stopped"
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["url"] == f"json://user:****@127.0.0.1:{receiver.port}/hang"
    assert receiver.paths() == ["/hang", "/hang"]
    assert all(SECRET not in str(entry) for entry in logs)


def test_a_hanging_url_holds_the_others_back_one_timeout_at_most(receiver: Receiver) -> None:
    sender = NotificationSender([receiver.url("hang"), receiver.url("ok")], fast())
    sender.submit(messages.trader_stopped("SIGTERM", 0))
    assert wait_until(lambda: len(receiver.requests) == 3)
    # Every URL gets its first attempt before any URL gets a second one.
    assert receiver.paths() == ["/hang", "/ok", "/hang"]
    sender.close(1.0)


def test_a_full_queue_drops_new_messages_and_says_so_once(receiver: Receiver) -> None:
    sender = NotificationSender([receiver.url("hang")], fast(queue_size=1, max_attempts=1))
    message = messages.trader_stopped("SIGTERM", 0)
    with captured_logs() as logs:
        assert sender.submit(message)
        assert wait_until(lambda: len(receiver.requests) == 1)  # the worker is busy with the first one
        assert sender.submit(message)  # queued
        assert [sender.submit(message) for _ in range(3)] == [False, False, False]
        assert wait_until(lambda: bool(events_named(logs, "notify.queue_drained")))
        sender.close(0.5)
    full = events_named(logs, "notify.queue_full")
    assert len(full) == 1 and full[0]["queue_size"] == 1 and full[0]["log_level"] == "warning"
    drained = events_named(logs, "notify.queue_drained")
    assert len(drained) == 1 and drained[0]["dropped"] == 3
    assert sender.dropped == 3


def test_close_returns_within_its_bound_with_a_hanging_url(receiver: Receiver) -> None:
    sender = NotificationSender([receiver.url("hang")], fast(timeout_seconds=2.0, max_attempts=3))
    message = messages.trader_stopped("SIGTERM", 0)
    with captured_logs() as logs:
        for _ in range(3):
            sender.submit(message)
        assert wait_until(lambda: len(receiver.requests) == 1)
        started = time.monotonic()
        sender.close(0.3)
        assert time.monotonic() - started < 1.5
    assert events_named(logs, "notify.close_timeout")
    assert not sender.submit(message)  # closed


def test_invalid_urls_are_reported_by_their_scheme_only(caplog: pytest.LogCaptureFixture) -> None:
    with captured_logs() as logs:
        sender = NotificationSender([f"tgram://{SECRET}", f"nosuch://user:{SECRET}@host/", "not a url"], fast())
    assert sender.targets == [] and sender.invalid == ["tgram://***", "nosuch://***", "***"]
    assert [e["url"] for e in events_named(logs, "notify.invalid_url")] == sender.invalid
    assert all(SECRET not in str(entry) for entry in logs)
    # apprise's own log line for a bad Telegram URL repeats it in clear: it is dropped.
    assert SECRET not in caplog.text
    assert masked_url(f"json://127.0.0.1:9/?+X-Token={SECRET}") == "json://127.0.0.1:9/"
    assert not sender.submit(messages.trader_stopped("SIGTERM", 0))


def test_send_now_reports_each_url(receiver: Receiver) -> None:
    sender = NotificationSender([receiver.url("ok"), "json://127.0.0.1:1/"], fast())
    good, bad = sender.send_now(messages.notify_test_message())
    assert (good.ok, good.attempts, good.error) == (True, 1, None)
    assert good.masked_url == f"json://user:****@127.0.0.1:{receiver.port}/ok"
    assert not bad.ok and bad.attempts == 2 and bad.error and bad.masked_url == "json://127.0.0.1:1/"


# ----- kronos-bot notify-test -----


def test_notify_test_prints_one_masked_line_per_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    monkeypatch.setenv("KRONOS_BOT_NOTIFY_URLS", f"{receiver.url('ok')} json://127.0.0.1:1/")
    monkeypatch.setenv("KRONOS_BOT__NOTIFY__BACKOFF_SECONDS", "0.05")
    assert cli.main(["--config", str(SHIPPED_CONFIG), "notify-test", "--attempts", "2"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"ok   json://user:****@127.0.0.1:{receiver.port}/ok"
    assert lines[1].startswith("FAIL json://127.0.0.1:1/: ") and lines[1].endswith("(after 2 attempts)")
    assert SECRET not in out + err
    assert receiver.requests[0][1]["title"] == "kronos-bot: test notification"


def test_notify_test_all_ok_exits_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    monkeypatch.setenv("KRONOS_BOT_NOTIFY_URLS", receiver.url("ok"))
    assert cli.main(["--config", str(SHIPPED_CONFIG), "notify-test"]) == 0
    assert capsys.readouterr().out.startswith("ok   ")


def test_notify_test_without_urls_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(SHIPPED_CONFIG), "notify-test"]) == 1
    assert "KRONOS_BOT_NOTIFY_URLS" in capsys.readouterr().err


def test_the_listener_is_a_drop_in_for_the_trader_events() -> None:
    # Every event the listener ignores is inherited from NoEvents (nothing to send, nothing raised).
    settings = NotifySettings()
    sender = RecordingSender(settings)
    listener = Notifications(sender, settings)
    listener.exit_tick(0.1, 0)
    listener.degraded(DegradedChange("news", True, "http 503", T0, T0))
    assert [m.event for m in sender.submitted] == ["degraded"]
