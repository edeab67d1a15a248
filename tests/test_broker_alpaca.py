"""The Alpaca broker driven through alpaca-py against our fake Alpaca over real HTTP."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from kronos_bot.broker.alpaca import AlpacaBroker, BrokerConfigError, LiveTradingRefused, resolve_paper
from kronos_bot.broker.base import BrokerUnavailable, OrderRejected, OrderSkipped
from kronos_bot.broker.factory import make_broker
from kronos_bot.config import Settings
from kronos_bot.trader.journal import Journal
from tests.broker_support import KEYS, ORDERS, Rig, build_rig, buys, captured_logs, enter, make_settings, standard_rig
from tests.fakealpaca import FakeAlpaca, Fault, Request, Response

D = Decimal


@pytest.fixture
def rig(fake_alpaca: FakeAlpaca, tmp_path: Path) -> Rig:
    r = standard_rig(fake_alpaca, tmp_path / "j.sqlite")
    yield r
    r.journal.close()


# ----- start-up switches -----


def test_live_trading_refused_without_both_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_paper(make_settings()) is True
    with pytest.raises(LiveTradingRefused, match="KRONOS_BOT_LIVE_TRADING"):
        AlpacaBroker.from_settings(make_settings(broker={"live": True}))
    monkeypatch.setenv("KRONOS_BOT_LIVE_TRADING", "yes")
    with pytest.raises(LiveTradingRefused):
        resolve_paper(make_settings(broker={"live": True}))
    monkeypatch.setenv("KRONOS_BOT_LIVE_TRADING", "I_UNDERSTAND")
    assert resolve_paper(make_settings()) is True  # the env alone never switches to live
    broker = AlpacaBroker.from_settings(make_settings(broker={"live": True}))
    assert broker.paper is False


def test_alpaca_needs_keys() -> None:
    settings = Settings(broker={"kind": "alpaca"})
    with pytest.raises(BrokerConfigError):
        make_broker(settings, None, lambda s: None)  # type: ignore[arg-type]


def test_our_retry_policy_replaces_alpaca_pys() -> None:
    broker = AlpacaBroker.from_settings(make_settings())
    assert broker.client._retry == 0  # alpaca-py would otherwise sleep 3 s x 3 on 429/504
    assert broker.client._session.timeout == 0.4


def test_secrets_never_logged(rig: Rig) -> None:
    with captured_logs() as logs:
        enter(rig)
    text = repr(logs)
    assert KEYS["ALPACA_SECRET_KEY"] not in text and KEYS["ALPACA_API_KEY"] not in text


# ----- the lifecycle -----


def test_buy_fee_in_coin_trailing_ratchet_and_exit_sells_actual_qty(rig: Rig) -> None:
    with captured_logs() as logs:
        outcome = enter(rig)
    assert outcome.status == "opened"
    pos = outcome.position
    [buy] = rig.fake.trading.orders_for(status="filled")
    assert buy.notional == D(100) and buy.filled_qty == D(1)
    assert pos.entry_filled_qty == D(1) and pos.qty == D("0.9975")  # 0.25 % fee taken in BTC
    assert pos.qty == rig.fake.trading.position_qty("BTC/USD")
    assert pos.entry_fee == D("0.0025") and pos.entry_price == D(100)
    assert pos.backstop_stop == D(98)
    events = [e["event"] for e in logs]
    assert events.index("order.submitted") < events.index("order.filled") < events.index("position.opened")

    for price in ["101", "101.2", "103", "102"]:
        assert rig.tick(price) == []
    cur = rig.journal.get_position(pos.id)
    assert cur.hwm == D(103) and cur.stop_price == D("100.94")
    patches = rig.fake.requests_to(ORDERS + r"/[^/]+", method="PATCH")
    assert len(patches) == 2  # 98 -> 98.98 (> 0.5 %) -> 100.94; 101.2 moved it < 0.5 %: no replace
    assert cur.backstop_stop == D("100.94")

    rig.fake.server.clear_requests()
    with captured_logs() as logs:
        closed = rig.tick("100.9")
    assert [c.exit_reason for c in closed] == ["trailing_stop"]
    methods = [(r.method, r.path) for r in rig.fake.requests if r.path.startswith("/v2/orders")]
    delete_at = next(i for i, (m, _) in enumerate(methods) if m == "DELETE")
    post_at = next(i for i, (m, _) in enumerate(methods) if m == "POST")
    assert delete_at < post_at  # the backstop is cancelled before the market sell
    [sell] = [o for o in rig.fake.trading.orders_for() if o.side == "sell" and o.type == "market"]
    assert sell.qty == D("0.9975")  # the broker's position qty, not the filled qty
    assert rig.fake.trading.positions == {}
    done = closed[0]
    proceeds = D("0.9975") * D("100.9") * D("0.9975")
    assert done.proceeds == proceeds and done.pnl == proceeds - D(100)
    closed_log = next(e for e in logs if e["event"] == "position.closed")
    assert closed_log["reason"] == "trailing_stop" and closed_log["pnl"] == done.pnl
    assert rig.fake.trading.orders_for(status="new") == []


def test_restart_mid_position_restores_hwm_and_stop(fake_alpaca: FakeAlpaca, rig: Rig, tmp_path: Path) -> None:
    pos = enter(rig).position
    rig.tick("110")
    rig.journal.close()
    again = build_rig(fake_alpaca, tmp_path / "j.sqlite")
    again.clock[0] = rig.clock[0]
    restored = again.journal.open_position_for("BTC/USD")
    assert restored.id == pos.id and restored.hwm == D(110) and restored.stop_price == D("107.80")
    assert again.tick("108") == []
    assert [c.exit_reason for c in again.tick("107.7")] == ["trailing_stop"]
    again.journal.close()
    rig.journal = Journal(tmp_path / "other.sqlite")  # the fixture closes this one


# ----- idempotency and faults -----


def test_timeout_after_accept_never_buys_twice(rig: Rig) -> None:
    rig.fake.trading.accept_then_stall(1.2)  # created at once, answered after the client's 0.4 s timeout
    with captured_logs() as logs:
        outcome = enter(rig)
    assert outcome.status == "opened"
    assert len(buys(rig.fake)) == 1
    assert len([o for o in rig.fake.trading.orders_for() if o.side == "buy"]) == 1
    assert any(e["event"] == "order.recovered" for e in logs)
    assert rig.fake.requests_to(r"/v2/orders:by_client_order_id")


def test_5xx_before_accept_retries_after_lookup(rig: Rig) -> None:
    rig.fake.fail(ORDERS, Fault.server_error(503), times=1, method="POST")
    outcome = enter(rig)
    assert outcome.status == "opened"
    posts = buys(rig.fake)
    assert [p.status for p in posts] == [503, 200]
    lookups = rig.fake.requests_to(r"/v2/orders:by_client_order_id")
    assert lookups and lookups[0].received_at < posts[1].received_at  # looked up BEFORE the retry
    assert len([o for o in rig.fake.trading.orders_for() if o.side == "buy"]) == 1
    assert rig.sleeps == [1.0]


def test_lost_responses_and_failed_lookups_still_one_order(rig: Rig) -> None:
    """Accepted, response lost, and the lookup fails too: the retry's duplicate client_order_id resolves."""
    rig.fake.trading.accept_then_stall(1.0)
    rig.fake.fail(r"/v2/orders:by_client_order_id", Fault.server_error(500), times=3)
    outcome = enter(rig)
    assert outcome.status == "opened"
    assert len([o for o in rig.fake.trading.orders_for() if o.side == "buy"]) == 1
    assert [p.status for p in buys(rig.fake)][-1] == 422


def test_insufficient_balance_403_logged_no_retry(rig: Rig) -> None:
    with captured_logs() as logs:
        outcome = enter(rig, notional="5000")
    assert outcome.status == "rejected"
    assert len(buys(rig.fake)) == 1
    assert rig.sleeps == []
    [rejected] = [e for e in logs if e["event"] == "order.rejected"]
    assert rejected["status_code"] == 403 and "insufficient balance" in rejected["error"]
    [order] = rig.journal.orders()
    assert order.status == "rejected"


@pytest.mark.parametrize("status", [400, 403, 422])
def test_other_rejects_not_retried(rig: Rig, status: int) -> None:
    rig.fake.fail(ORDERS, Fault.http_status(status, "nope"), times=None, method="POST")
    with pytest.raises(OrderRejected) as err:
        rig.broker.buy_notional("BTC/USD", D(50), "kb-x")
    assert err.value.status_code == status
    assert len(rig.fake.requests_to(ORDERS, method="POST")) == 1


def test_persistent_5xx_gives_up_as_unavailable(rig: Rig) -> None:
    rig.fake.fail(ORDERS, Fault.server_error(500), times=None, method="POST")
    outcome = enter(rig)
    assert outcome.status == "unknown"
    assert len(buys(rig.fake)) == 3  # broker.max_attempts, no more
    [order] = rig.journal.pending_orders()  # left for reconciliation, by client_order_id
    assert order.status == "unknown"


def test_429_retry_after_honoured_by_our_policy(rig: Rig) -> None:
    rig.fake.fail(r"/v2/account", Fault.rate_limited(retry_after=2), times=1)
    assert rig.broker.get_account().cash == D(1000)
    assert rig.sleeps == [2.0]
    assert len(rig.fake.requests_to(r"/v2/account")) == 2


def test_reads_give_up_after_max_attempts(rig: Rig) -> None:
    rig.fake.fail(r"/v2/positions", Fault.disconnect(), times=None)
    with pytest.raises(BrokerUnavailable):
        rig.broker.get_positions()
    assert len(rig.fake.requests_to(r"/v2/positions")) == 3


def test_duplicate_client_order_id_resolves_to_existing(rig: Rig) -> None:
    first = rig.broker.buy_notional("BTC/USD", D(50), "kb-dup")
    second = rig.broker.buy_notional("BTC/USD", D(50), "kb-dup")
    assert first.order_id == second.order_id and len(rig.fake.trading.orders) == 1


# ----- sizes, rounding, partial fills -----


def test_qty_rounded_down_and_min_order_size(rig: Rig) -> None:
    rig.broker.buy_notional("BTC/USD", D(100), "kb-b")
    held = rig.fake.trading.position_qty("BTC/USD")
    sell = rig.broker.sell_qty("BTC/USD", D("0.123456789"), "kb-s")
    assert sell.qty == D("0.1234")
    rig.fake.server.clear_requests()
    with pytest.raises(OrderSkipped) as err:
        rig.broker.sell_qty("BTC/USD", D("0.00009"), "kb-tiny")
    assert err.value.reason in ("zero_qty", "below_min_order_size")
    with pytest.raises(OrderSkipped) as err:
        rig.broker.buy_notional("BTC/USD", D("5"), "kb-small")  # below sizing.min_notional (10)
    assert err.value.reason == "below_min_notional"
    with pytest.raises(OrderSkipped) as err:
        rig.broker.buy_notional("BTC/USD", D("10"), "kb-small2", price_hint=D(200000))
    assert err.value.reason == "below_min_order_size"
    assert rig.fake.requests_to(ORDERS, method="POST") == []  # nothing was sent
    assert held > 0


def test_asset_info_cached(rig: Rig) -> None:
    for _ in range(3):
        rig.broker.get_asset("BTC/USD")
    assert len(rig.fake.requests_to(r"/v2/assets/.+")) == 1


def test_partial_fill_opens_position_with_what_was_filled(rig: Rig) -> None:
    rig.fake.trading.fill_mode = "partial"
    outcome = enter(rig)
    assert outcome.status == "opened"
    assert outcome.position.entry_filled_qty == D("0.5")
    assert outcome.position.qty == rig.fake.trading.position_qty("BTC/USD") == D("0.49875")
    [order] = [o for o in rig.journal.orders() if o.purpose == "entry"]
    assert order.status == "partially_filled"  # still pending: reconciliation follows it up
    # The backstop protects what is held; the exit sells exactly that.
    assert outcome.position.backstop_order_id is not None
    rig.fake.trading.fill_mode = "fill"
    closed = rig.tick("97")
    assert [c.exit_reason for c in closed] == ["trailing_stop"]
    # Sold what the broker holds, rounded DOWN to the 0.0001 increment; the 0.00005 remainder is dust.
    assert closed[0].exit_qty == D("0.4987")
    assert rig.fake.trading.position_qty("BTC/USD") == D("0.00005")


# ----- backstop races -----


def test_backstop_filled_while_bot_was_down(rig: Rig) -> None:
    pos = enter(rig).position
    rig.fake.trading.trigger("BTC/USD", "97.9")  # the exchange fills the stop_limit (stop 98, limit 97.02)
    closed = rig.tick("97.9")
    assert [c.exit_reason for c in closed] == ["backstop"]
    assert closed[0].exit_qty == pos.qty and closed[0].exit_price == D("97.9")
    assert rig.fake.requests_to(ORDERS, method="POST")[-1].json["type"] == "stop_limit"  # no market sell


def test_backstop_filled_while_cancelling(rig: Rig) -> None:
    pos = enter(rig).position
    trading = rig.fake.trading

    def cancel_loses_the_race(request: Request) -> Response:
        trading.trigger("BTC/USD", "97.95")  # fills a moment before our DELETE arrives
        return trading._cancel(request)

    rig.fake.server.add_route("DELETE", r"/v2/orders/(?P<order_id>[^/:]+)", cancel_loses_the_race)
    with captured_logs() as logs:
        closed = rig.tick("97.95")
    assert [c.exit_reason for c in closed] == ["backstop"]
    assert [r.status for r in rig.fake.requests_to(ORDERS + r"/[^/]+", method="DELETE")] == [422]
    assert not [o for o in trading.orders_for() if o.type == "market" and o.side == "sell"]
    assert closed[0].exit_qty == pos.qty
    assert any(e["event"] == "position.closed" and e["reason"] == "backstop" for e in logs)
