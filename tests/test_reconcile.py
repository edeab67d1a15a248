"""Reconciliation against the fake Alpaca: crashes around orders, vanished and external positions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kronos_bot.broker.base import OrderSide, OrderType, client_order_id
from kronos_bot.trader.reconcile import Reconciler
from tests.broker_support import T0, Rig, captured_logs, enter, standard_rig
from tests.fakealpaca import FakeAlpaca

D = Decimal


@pytest.fixture
def rig(fake_alpaca: FakeAlpaca, tmp_path: Path) -> Rig:
    r = standard_rig(fake_alpaca, tmp_path / "j.sqlite")
    yield r
    r.journal.close()


def reconciler(rig: Rig) -> Reconciler:
    return Reconciler(
        rig.broker,
        rig.journal,
        rig.executor,
        rig.settings,
        price_source=lambda s: rig.fake.trading.prices.get(s),
        clock=rig.now,
    )


def intent(rig: Rig, cid: str, notional: str = "100") -> None:
    rig.journal.record_order_intent(
        client_order_id=cid,
        symbol="BTC/USD",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        purpose="entry",
        notional=D(notional),
        now=T0,
    )


def test_crash_before_submit_intent_marked_lost_after_grace(rig: Rig) -> None:
    cid = client_order_id("BTC/USD", T0, "buy")
    intent(rig, cid)
    rec = reconciler(rig)
    rec.run(now=T0 + timedelta(seconds=30))  # maybe still on its way from another thread: left alone
    assert rig.journal.get_order(cid).status == "intent"
    report = rec.run(now=T0 + timedelta(minutes=5))
    assert report.orders_resolved == [cid]
    assert rig.journal.get_order(cid).status == "canceled"
    assert rig.journal.open_positions() == []


def test_crash_after_submit_before_record_opens_the_position(rig: Rig) -> None:
    cid = client_order_id("BTC/USD", T0, "buy")
    intent(rig, cid)
    rig.broker.buy_notional("BTC/USD", D(100), cid)  # reached the broker; then the process died
    report = reconciler(rig).run()
    [opened] = report.opened
    assert opened.qty == rig.fake.trading.position_qty("BTC/USD") == D("0.9975")
    assert opened.entry_filled_qty == D(1) and opened.entry_client_order_id == cid
    assert opened.backstop_order_id is not None
    # and a re-run of the same cycle does not buy again
    again = enter(rig)
    assert again.status == "exists"
    assert len([o for o in rig.fake.trading.orders_for() if o.side == "buy"]) == 1


def test_position_closed_by_hand_is_external(rig: Rig) -> None:
    pos = enter(rig).position
    for order in rig.fake.trading.orders_for(status="new"):  # the user cancels everything and sells
        order.status = "canceled"
    rig.fake.trading.positions.clear()
    with captured_logs() as logs:
        report = reconciler(rig).run()
    assert [c.exit_reason for c in report.closed] == ["external"]
    assert rig.journal.get_position(pos.id).status == "closed"
    assert any(e["event"] == "reconcile.position_closed" for e in logs)


def test_backstop_filled_while_down_is_backstop(rig: Rig) -> None:
    pos = enter(rig).position
    rig.fake.trading.trigger("BTC/USD", "97.5")
    report = reconciler(rig).run()
    [closed] = report.closed
    assert closed.exit_reason == "backstop" and closed.exit_qty == pos.qty and closed.exit_price == D("97.5")


def test_external_position_ignored_and_logged_once(rig: Rig) -> None:
    rig.broker.buy_notional("BTC/USD", D(50), "manual-buy")  # not through the bot: no journal intent
    rec = reconciler(rig)
    with captured_logs() as logs:
        first = rec.run()
        second = rec.run()
    assert first.ignored_external == second.ignored_external == ["BTC/USD"]
    assert [e["event"] for e in logs].count("reconcile.external_ignored") == 1
    assert [e["event"] for e in logs].count("reconcile.unknown_order") == 0
    assert rig.journal.open_positions() == []


def test_external_position_adopted_when_configured(fake_alpaca: FakeAlpaca, tmp_path: Path) -> None:
    rig = standard_rig(fake_alpaca, tmp_path / "j.sqlite", broker={"adopt_external_positions": True})
    rig.broker.buy_notional("BTC/USD", D(50), "manual-buy")
    report = reconciler(rig).run()
    [adopted] = report.adopted
    assert adopted.external and adopted.qty == rig.fake.trading.position_qty("BTC/USD")
    assert adopted.stop_price is not None and adopted.backstop_order_id is not None
    assert reconciler(rig).run().adopted == []  # once
    rig.journal.close()


def test_partial_entry_followed_up(rig: Rig) -> None:
    rig.fake.trading.fill_mode = "partial"
    pos = enter(rig).position
    assert pos.qty == D("0.49875")
    [entry] = [o for o in rig.fake.trading.orders_for() if o.side == "buy"]
    rig.fake.trading.fill(entry.id)  # the rest fills later
    reconciler(rig).run()
    grown = rig.journal.get_position(pos.id)
    assert grown.entry_filled_qty == D(1) and grown.qty == D("0.9975") == rig.fake.trading.position_qty("BTC/USD")
    assert grown.backstop_order_id is None  # cancelled: it only covered the first half
    rig.tick("100")  # the monitor re-places it for the whole quantity
    again = rig.journal.get_position(pos.id)
    backstop = rig.fake.trading.orders[again.backstop_order_id]
    assert backstop.qty == D("0.9975")


def test_orphan_backstop_cancelled(rig: Rig) -> None:
    pos = enter(rig).position
    backstop_id = pos.backstop_order_id
    # crash between "position closed" and "backstop cancelled": simulate by closing in the journal only
    rig.journal.close_position(
        pos.id, exit_time=T0, exit_price=D(100), exit_qty=pos.qty, reason="trailing_stop", exit_fee=D(0), proceeds=D(99)
    )
    report = reconciler(rig).run()
    assert report.orphans_canceled == [pos.backstop_client_order_id]
    assert rig.fake.trading.orders[backstop_id].status == "canceled"


def test_broker_qty_below_journal_qty_wins(rig: Rig) -> None:
    pos = enter(rig).position
    rig.fake.trading.positions["BTC/USD"].qty = D("0.9")
    report = reconciler(rig).run()
    assert report.qty_synced == ["BTC/USD"]
    assert rig.journal.get_position(pos.id).qty == D("0.9")


def test_unknown_open_orders_logged_once(rig: Rig) -> None:
    rig.broker.buy_notional("BTC/USD", D(50), "someone-else-buy")
    rig.broker.place_stop_limit_sell("BTC/USD", D("0.1"), D(90), D(89), "someone-else-stop")
    rec = reconciler(rig)
    with captured_logs() as logs:
        assert rec.run().unknown_orders == ["someone-else-stop"]
        assert rec.run().unknown_orders == []
    assert rig.fake.trading.by_client_id("someone-else-stop").status == "new"  # never touched
    assert [e["event"] for e in logs].count("reconcile.unknown_order") == 1


def test_slow_entry_fill_pending_blocks_reentry_then_recovered(rig: Rig) -> None:
    rig.fake.trading.fill_mode = "hold"  # accepted, not filled within the executor's wait
    outcome = enter(rig)
    assert outcome.status == "pending" and rig.journal.open_positions() == []
    assert "BTC/USD" in rig.executor.risk_state(T0).open_symbols  # the next cycle will not buy again
    [entry] = rig.fake.trading.orders_for(status="new")
    rig.fake.trading.fill(entry.id)
    report = reconciler(rig).run()
    [opened] = report.opened
    assert opened.qty == D("0.9975") and opened.backstop_order_id is not None
    assert rig.executor.risk_state(T0).open_symbols == frozenset({"BTC/USD"})


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler catches it."""


def _die_when_opening(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(**_kwargs: object) -> None:
        raise _Killed

    monkeypatch.setattr(rig.journal, "open_position", killed)


def test_crash_between_recorded_fill_and_position_recovers_it(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    # The buy filled and its fill is journaled (the order is no longer pending), then the process died
    # before the position row was written: the next start must open it, and no cycle may buy again first.
    with monkeypatch.context() as patch:
        _die_when_opening(rig, patch)
        with pytest.raises(_Killed):
            enter(rig)
    cid = client_order_id("BTC/USD", T0, "buy")
    assert rig.journal.get_order(cid).status == "filled" and rig.journal.open_positions() == []
    assert "BTC/USD" in rig.executor.risk_state(T0).open_symbols  # even before reconciliation runs
    with captured_logs() as logs:
        report = reconciler(rig).run()
    [opened] = report.opened
    assert opened.entry_client_order_id == cid and opened.qty == rig.fake.trading.position_qty("BTC/USD")
    assert opened.backstop_order_id is not None
    assert "reconcile.position_recovered" in [e["event"] for e in logs]
    assert reconciler(rig).run().opened == []  # found once, not again
    assert rig.executor.risk_state(T0).open_symbols == frozenset({"BTC/USD"})
    assert len([o for o in rig.fake.trading.orders_for() if o.side == "buy"]) == 1


def test_filled_entry_while_another_position_is_open_is_reported_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _die_when_opening(rig, patch)
        with pytest.raises(_Killed):
            enter(rig)
    # A journal written before the fix: a later cycle bought again and that position is open.
    assert enter(rig, when=T0 + timedelta(minutes=15)).status == "opened"
    rec = reconciler(rig)
    with captured_logs() as logs:
        rec.run()
        rec.run()
    assert [e["event"] for e in logs].count("reconcile.entry_unmatched") == 1
    assert len(rig.journal.open_positions()) == 1  # never merged by guesswork
