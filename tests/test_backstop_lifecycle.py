"""The backstop state machine and the exit path through crashes, refused replaces and lost journal links.

A "crash" here is a process death between two steps: a broker proxy lets one call reach the (fake) broker
and then raises `Killed`, a BaseException no handler of the bot catches -- exactly what kill -9 leaves
behind: the broker has acted, the journal has not heard. A new Rig on the same journal file is the
restarted process. Each scenario is one the hostile-operator campaign of issue #12 found broken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kronos_bot.broker.base import OrderSide, OrderType
from kronos_bot.trader.reconcile import Reconciler
from tests.broker_support import ORDERS, Rig, build_rig, captured_logs, enter, standard_rig
from tests.fakealpaca import FakeAlpaca, Request, Response

D = Decimal
SYMBOL = "BTC/USD"


class Killed(BaseException):
    """The process died right here (kill -9): nothing after this line of the bot ran."""


class DiesAfter:
    """Proxy of a broker: the `method` call reaches the broker, then the process 'dies' before it returns."""

    def __init__(self, broker: Any, method: str, *, before: bool = False) -> None:
        self._broker = broker
        self._method = method
        self._before = before

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._broker, name)
        if name != self._method:
            return attr

        def dying(*args: Any, **kwargs: Any) -> Any:
            if self._before:
                raise Killed(name)
            attr(*args, **kwargs)
            raise Killed(name)

        return dying


@pytest.fixture
def rig(fake_alpaca: FakeAlpaca, tmp_path: Path) -> Iterator[Rig]:
    r = standard_rig(fake_alpaca, tmp_path / "j.sqlite")
    yield r
    r.journal.close()


def restart(rig: Rig, path: Path) -> Rig:
    """The same journal file and fake broker, a fresh process (new connections, objects and memory)."""
    rig.journal.close()
    new = build_rig(rig.fake, path)
    new.clock[0] = rig.clock[0]
    return new


def crash_during(rig: Rig, method: str, action: Callable[[], Any], *, before: bool = False) -> None:
    """Run `action` with the broker's `method` dying after (or before) it reached the broker."""
    real = rig.executor.broker
    dying = DiesAfter(real, method, before=before)
    for holder in (rig.executor, rig.executor.desk, rig.monitor):
        holder.broker = dying  # type: ignore[assignment]
    with pytest.raises(Killed):
        action()


def live_backstops(fake: FakeAlpaca) -> list[Any]:
    return [o for o in fake.trading.orders_for(SYMBOL) if o.type == "stop_limit" and o.status in ("new", "accepted")]


def assert_one_true_backstop(rig: Rig) -> None:
    """The invariant of issue #12: one live backstop per open position, and the journal names it."""
    (position,) = rig.journal.open_positions()
    live = live_backstops(rig.fake)
    assert len(live) == 1, [o.client_order_id for o in live]
    assert position.backstop_order_id == live[0].id
    assert position.backstop_client_order_id == live[0].client_order_id


def test_kill_after_a_replace_reached_the_broker_relinks_the_new_backstop(rig: Rig, tmp_path: Path) -> None:
    pos = enter(rig).position
    b1 = pos.backstop_client_order_id
    rig.clock[0] = rig.clock[0].replace(minute=1)
    rig.fake.trading.set_price(SYMBOL, "103")
    crash_during(rig, "replace_stop_limit", rig.monitor.run_once)
    # The broker has the new order; the journal still names the old (now replaced) one.
    assert rig.fake.trading.by_client_id(b1).status == "replaced"
    assert rig.journal.get_position(pos.id).backstop_client_order_id == b1

    rig = restart(rig, tmp_path / "j.sqlite")
    Reconciler(rig.broker, rig.journal, rig.executor, rig.settings, clock=rig.now).run()
    assert_one_true_backstop(rig)
    relinked = rig.journal.get_position(pos.id)
    assert relinked.backstop_client_order_id != b1 and relinked.backstop_stop == D("100.94")
    assert rig.journal.get_order(relinked.backstop_client_order_id).status == "open"  # never marked rejected

    # The trailing exit then sells at once: no 403 from a stop the journal lost, and it is ours, not `external`.
    closed = rig.tick("100.5")
    assert [c.exit_reason for c in closed] == ["trailing_stop"]
    assert not [r for r in rig.fake.requests if r.status == 403]
    assert live_backstops(rig.fake) == []
    assert rig.fake.trading.position_qty(SYMBOL) == 0


def test_kill_after_a_replace_then_exit_tick_without_reconcile_keeps_one_backstop(rig: Rig, tmp_path: Path) -> None:
    """The exit monitor alone (its first tick after a restart) resolves it too; the stop moves on from there."""
    pos = enter(rig).position
    rig.fake.trading.set_price(SYMBOL, "103")
    crash_during(rig, "replace_stop_limit", rig.monitor.run_once)
    rig = restart(rig, tmp_path / "j.sqlite")
    for price in ("103", "106"):
        assert rig.tick(price) == []
        assert_one_true_backstop(rig)
    assert rig.journal.get_position(pos.id).backstop_stop == D("103.88")
    assert not [r for r in rig.fake.requests if r.status == 422 and r.method == "PATCH"]


def test_backstop_that_filled_while_down_under_a_lost_link_closes_as_backstop(rig: Rig, tmp_path: Path) -> None:
    pos = enter(rig).position
    rig.fake.trading.set_price(SYMBOL, "103")
    crash_during(rig, "replace_stop_limit", rig.monitor.run_once)
    # While the bot is down the market falls through the new (untracked) stop, which fills.
    [filled] = rig.fake.trading.trigger(SYMBOL, "100.5")
    rig = restart(rig, tmp_path / "j.sqlite")
    closed = rig.tick("100.5")
    assert [c.exit_reason for c in closed] == ["backstop"]
    done = closed[0]
    assert done.exit_price == D("100.5") and done.exit_qty == filled.filled_qty
    assert done.exit_fee > 0  # the fee of a real fill, not the fee-less valuation of an `external` close
    assert done.proceeds == done.exit_qty * D("100.5") - done.exit_fee
    assert rig.journal.get_position(pos.id).exit_reason == "backstop"


def test_refused_replace_falls_back_to_cancel_confirm_place(rig: Rig) -> None:
    rig.fake.trading.refuse_replace = True
    pos = enter(rig).position
    b1 = pos.backstop_client_order_id
    with captured_logs() as logs:
        assert rig.tick("103") == []
    assert rig.fake.trading.by_client_id(b1).status == "canceled"
    assert_one_true_backstop(rig)
    moved = rig.journal.get_position(pos.id)
    assert moved.backstop_stop == D("100.94")
    events = [e["event"] for e in logs]
    assert "backstop.replace_refused" in events
    assert any(e["event"] == "backstop.replaced" and e["method"] == "cancel_then_place" for e in logs)
    # the journal tells the steps in order: old canceled, new open
    assert rig.journal.get_order(b1).status == "canceled"
    assert rig.journal.get_order(moved.backstop_client_order_id).status == "open"


def test_kill_between_cancel_and_place_of_the_fallback_is_protected_again_next_tick(rig: Rig, tmp_path: Path) -> None:
    rig.fake.trading.refuse_replace = True
    pos = enter(rig).position
    rig.fake.trading.set_price(SYMBOL, "103")
    crash_during(rig, "place_stop_limit_sell", rig.monitor.run_once, before=True)
    assert live_backstops(rig.fake) == []  # cancelled, the new one never sent: unprotected for now
    rig = restart(rig, tmp_path / "j.sqlite")
    assert rig.tick("103") == []
    assert_one_true_backstop(rig)
    assert rig.journal.get_position(pos.id).backstop_stop == D("100.94")


def test_kill_after_the_fallback_placement_reached_the_broker_relinks_it(rig: Rig, tmp_path: Path) -> None:
    rig.fake.trading.refuse_replace = True
    enter(rig)
    rig.fake.trading.set_price(SYMBOL, "103")
    crash_during(rig, "place_stop_limit_sell", rig.monitor.run_once)
    assert len(live_backstops(rig.fake)) == 1
    rig = restart(rig, tmp_path / "j.sqlite")
    assert rig.tick("103") == []
    assert_one_true_backstop(rig)


def test_duplicate_and_stray_backstops_are_cancelled_and_a_lost_row_relinked(rig: Rig) -> None:
    pos = enter(rig).position
    trading = rig.fake.trading
    trading.positions[SYMBOL].qty += D("0.0002")  # coins beyond the journal's, so extra stops can rest
    # A second live backstop of this position (a request that landed after we gave up on it) ...
    dup_cid = pos.backstop_client_order_id[:-1] + "7"
    rig.broker.place_stop_limit_sell(SYMBOL, D("0.0001"), D(97), D(96), dup_cid)
    # ... and one left over from an earlier position in the same symbol.
    stray_cid = "kb-BTCUSD-stop-20250101T000000-3"
    rig.broker.place_stop_limit_sell(SYMBOL, D("0.0001"), D(90), D(89), stray_cid)
    with captured_logs() as logs:
        assert rig.tick("100") == []
    assert trading.by_client_id(stray_cid).status == "canceled"
    assert_one_true_backstop(rig)
    events = [e["event"] for e in logs]
    assert "backstop.stray_canceled" in events and "backstop.duplicate_canceled" in events

    # The journal loses the row and the link of the live backstop: the next tick re-links it, journaled.
    live = live_backstops(rig.fake)[0]
    with rig.journal.transaction() as conn:
        conn.execute("DELETE FROM orders WHERE client_order_id = ?", (live.client_order_id,))
        conn.execute("UPDATE positions SET backstop_order_id = NULL, backstop_client_order_id = NULL")
    with captured_logs() as logs:
        assert rig.tick("100") == []
    assert_one_true_backstop(rig)
    assert rig.journal.get_position(pos.id).backstop_client_order_id == live.client_order_id
    assert rig.journal.get_order(live.client_order_id).purpose == "backstop"
    assert "backstop.relinked" in [e["event"] for e in logs]


def _lose_the_backstop(rig: Rig, pos: Any) -> Any:
    """The journal loses the stop entirely (row and link) while it holds every coin at the broker."""
    b1 = rig.fake.trading.by_client_id(pos.backstop_client_order_id)
    with rig.journal.transaction() as conn:
        conn.execute("DELETE FROM orders WHERE client_order_id = ?", (b1.client_order_id,))
    rig.journal.set_backstop(pos.id, order_id=None, client_order_id=None, stop=None, seq=pos.backstop_seq)
    return b1


def test_exit_with_coins_held_by_an_untracked_stop_frees_them_first(rig: Rig) -> None:
    pos = enter(rig).position
    b1 = _lose_the_backstop(rig, pos)
    rig.fake.server.clear_requests()
    closed = rig.executor.exit(rig.journal.get_position(pos.id), reason=_reason("stop_loss"), price=D(94))
    assert closed is not None and closed.exit_reason == "stop_loss"  # never `external`: the coins were there
    assert b1.status == "canceled"
    sells = [r for r in rig.fake.requests_to(ORDERS, method="POST") if r.json["type"] == "market"]
    assert [r.status for r in sells] == [200]
    assert rig.fake.trading.position_qty(SYMBOL) == 0


def test_403_on_an_exit_frees_the_coins_once_instead_of_a_retry_loop(rig: Rig) -> None:
    """A broker whose position shows the coins as free while a stop holds them: the sell gets 403."""
    pos = enter(rig).position
    trading = rig.fake.trading
    b1 = _lose_the_backstop(rig, pos)

    def positions_without_holds(request: Request) -> Response:
        response = trading._positions(request)
        for item in response.json:
            item["qty_available"] = item["qty"]
        return response

    rig.fake.server.add_route("GET", r"/v2/positions", positions_without_holds)
    rig.fake.server.clear_requests()
    with captured_logs() as logs:
        closed = rig.executor.exit(rig.journal.get_position(pos.id), reason=_reason("stop_loss"), price=D(94))
    assert closed is not None and closed.exit_reason == "stop_loss"
    assert b1.status == "canceled"
    sells = [r for r in rig.fake.requests_to(ORDERS, method="POST") if r.json["type"] == "market"]
    assert [r.status for r in sells] == [403, 200]  # one 403, one resolution, one sell
    assert "exit.coins_freed" in [e["event"] for e in logs]
    assert rig.fake.trading.position_qty(SYMBOL) == 0


def test_exit_blocked_by_orders_that_are_not_ours_is_said_once_and_tried_each_tick(rig: Rig) -> None:
    pos = enter(rig).position
    trading = rig.fake.trading
    _lose_the_backstop(rig, pos)
    stop = next(o for o in trading.orders_for(SYMBOL) if o.type == "stop_limit" and o.status == "new")
    stop.client_order_id = "my-own-manual-stop"  # someone else's order now holds the coins
    with captured_logs() as logs:
        for _ in range(3):
            assert rig.executor.exit(rig.journal.get_position(pos.id), reason=_reason("stop_loss"), price=D(94)) is None
    blocked = [e for e in logs if e["event"] == "exit.blocked"]
    assert [e["log_level"] for e in blocked] == ["warning", "debug", "debug"]
    assert stop.status == "new"  # never touched
    assert rig.journal.get_position(pos.id).is_open


def test_exit_order_that_filled_while_down_closes_with_its_reason(rig: Rig, tmp_path: Path) -> None:
    pos = enter(rig).position
    rig.fake.trading.set_price(SYMBOL, "94")
    crash_during(rig, "sell_qty", rig.monitor.run_once)
    assert rig.fake.trading.position_qty(SYMBOL) == 0
    rig = restart(rig, tmp_path / "j.sqlite")
    report = Reconciler(rig.broker, rig.journal, rig.executor, rig.settings, clock=rig.now).run()
    [closed] = report.closed
    # 94 is below the armed trail (98): the sell was sent as a trailing_stop exit, and it closes as one.
    [sell] = [r for r in rig.journal.orders(position_id=pos.id) if r.purpose == "exit"]
    assert sell.reason == "trailing_stop" and sell.status == "filled"
    assert closed.id == pos.id and closed.exit_reason == "trailing_stop"
    assert closed.exit_price == D(94) and closed.exit_qty == pos.qty


def test_kill_before_a_backstop_placement_response_leaves_one_backstop(rig: Rig, tmp_path: Path) -> None:
    """Placed at the broker, the response lost with the process: the restart finds it by client_order_id."""
    decision_time = rig.clock[0]
    crash_during(rig, "place_stop_limit_sell", lambda: enter(rig, when=decision_time))
    rig = restart(rig, tmp_path / "j.sqlite")
    Reconciler(rig.broker, rig.journal, rig.executor, rig.settings, clock=rig.now).run()
    assert_one_true_backstop(rig)
    assert rig.tick("100") == []
    assert_one_true_backstop(rig)


def test_own_order_is_recognised_by_its_client_id_alone() -> None:
    from kronos_bot.trader.orders import backstop_seq_of, is_own_order, own_kind

    assert own_kind("kb-BTCUSD-stop-20250301T120030-4") == "stop"
    assert own_kind("kb-BTCUSD-sell-20250301T120030") == "sell"
    assert own_kind("manual-close") is None and not is_own_order("someone-else-stop")
    assert backstop_seq_of("kb-BTCUSD-stop-20250301T120030-12") == 12


def test_intent_is_journaled_before_a_backstop_request_is_sent(rig: Rig) -> None:
    """Order of operations: the row exists when the broker call starts (here the call dies before sending)."""
    pos = enter(rig).position
    rig.fake.trading.set_price(SYMBOL, "103")
    crash_during(rig, "replace_stop_limit", rig.monitor.run_once, before=True)
    rows = [r for r in rig.journal.orders(position_id=pos.id) if r.purpose == "backstop"]
    assert [r.status for r in rows] == ["open", "intent"]
    assert rows[1].side == OrderSide.SELL.value and rows[1].type == OrderType.STOP_LIMIT.value


def _reason(name: str) -> Any:
    from kronos_bot.trader.stops import ExitReason

    return ExitReason(name)
