"""Exit monitor + executor over the simulated broker: the whole position lifecycle, restarts and races."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kronos_bot.broker.base import OrderStatus
from kronos_bot.broker.sim import SimBroker
from kronos_bot.config import Settings
from kronos_bot.domain import Action, Decision, Tier
from kronos_bot.trader.execution import Executor
from kronos_bot.trader.exit_monitor import ExitMonitor
from kronos_bot.trader.journal import Journal

D = Decimal
T0 = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)


class Market:
    def __init__(self) -> None:
        self.prices: dict[str, Decimal] = {}
        self.now = T0

    def price(self, symbol: str) -> Decimal | None:
        return self.prices.get(symbol)

    def clock(self) -> datetime:
        return self.now


def build(path: Path, market: Market, **settings_kw: object):
    base: dict[str, object] = {
        "exits": {
            "trail_percent": 2,
            "trail_activation_percent": 0,
            "stop_loss_percent": 5,
            "backstop": {"enabled": True, "limit_offset_percent": 1, "replace_step_percent": 0.5},
        },
        "broker": {"sim": {"starting_cash": 1000, "fee_percent": 0.25, "slippage_bps": 0}},
    }
    settings = Settings(**{**base, **settings_kw})
    journal = Journal(path)
    broker = SimBroker(journal, settings.broker.sim, market.price, clock=market.clock)
    executor = Executor(broker, journal, settings, clock=market.clock, sleep=lambda s: None)
    monitor = ExitMonitor(broker, journal, executor, settings, market.price, clock=market.clock)
    return settings, journal, broker, executor, monitor


def enter(executor: Executor, symbol: str = "BTC/USD", notional: str = "100") -> object:
    decision = Decision(symbol, Action.ENTER, Tier.TRIPLE_CONFIRMED, D(notional), ["triple_confirmed"], T0)
    return executor.enter(decision, cycle_time=T0)


def test_full_lifecycle_ratchet_and_exit_sells_actual_qty(tmp_path: Path) -> None:
    market = Market()
    market.prices["BTC/USD"] = D(100)
    _, journal, broker, executor, monitor = build(tmp_path / "j.sqlite", market)
    outcome = enter(executor)
    assert outcome.status == "opened"
    pos = outcome.position
    assert pos.qty == broker.get_position("BTC/USD").qty  # net of the fee taken in coin
    assert pos.entry_fee == pos.entry_filled_qty - pos.qty > 0
    assert pos.stop_price == D(98) and pos.backstop_stop == D(98)
    first_backstop = pos.backstop_order_id

    path = ["100.3", "101", "103", "102.5", "105", "104", "102.9"]
    closed = []
    for i, p in enumerate(path):
        market.now = T0 + timedelta(minutes=i + 1)
        market.prices["BTC/USD"] = D(p)
        closed += monitor.run_once()
        if closed:
            break
        cur = journal.get_position(pos.id)
        # the backstop follows the stop in steps of > 0.5 %
        assert cur.backstop_stop is not None and cur.backstop_stop <= cur.stop_price
    assert len(closed) == 1
    done = closed[0]
    assert done.exit_reason == "trailing_stop" and done.hwm == D(105)
    assert done.exit_qty == pos.qty and done.exit_price == D("102.9")
    assert broker.get_position("BTC/USD") is None
    assert broker.get_order(first_backstop).status is OrderStatus.REPLACED
    assert broker.get_open_orders() == []  # backstop cancelled before the market exit
    expected_proceeds = pos.qty * D("102.9") * D("0.9975")
    assert done.proceeds == expected_proceeds
    assert done.pnl == expected_proceeds - D(100)
    assert journal.realized_pnl_for_day(market.now) == done.pnl
    journal.close()


def test_restart_mid_position_restores_hwm_and_stop(tmp_path: Path) -> None:
    market = Market()
    market.prices["ETH/USD"] = D(2000)
    _, journal, _, executor, monitor = build(tmp_path / "j.sqlite", market)
    pos = enter(executor, "ETH/USD").position
    market.prices["ETH/USD"] = D(2100)
    market.now += timedelta(minutes=1)
    monitor.run_once()
    before = journal.get_position(pos.id)
    assert before.hwm == D(2100) and before.stop_price == D(2058)
    journal.close()

    # A new process: new journal connection on the same file, new broker/executor/monitor objects.
    _, journal2, broker2, _, monitor2 = build(tmp_path / "j.sqlite", market)
    restored = journal2.open_position_for("ETH/USD")
    assert restored.hwm == D(2100) and restored.stop_price == D(2058)
    assert restored.backstop_order_id == before.backstop_order_id
    market.prices["ETH/USD"] = D(2060)  # above the restored stop: no exit
    market.now += timedelta(minutes=1)
    assert monitor2.run_once() == []
    market.prices["ETH/USD"] = D(2057)  # below it: exit, although this process never saw 2100
    market.now += timedelta(minutes=1)
    closed = monitor2.run_once()
    assert [c.exit_reason for c in closed] == ["trailing_stop"]
    assert broker2.get_position("ETH/USD") is None
    journal2.close()


def test_backstop_filled_while_bot_was_away(tmp_path: Path) -> None:
    market = Market()
    market.prices["SOL/USD"] = D(100)
    _, journal, broker, executor, monitor = build(tmp_path / "j.sqlite", market)
    pos = enter(executor, "SOL/USD").position
    market.prices["SOL/USD"] = D("97.5")
    broker.on_price("SOL/USD", D("97.5"))  # the exchange triggers and fills the stop_limit
    market.now += timedelta(minutes=5)
    closed = monitor.run_once()
    assert [c.exit_reason for c in closed] == ["backstop"]
    assert closed[0].exit_qty == pos.qty and closed[0].exit_price == D("97.5")
    journal.close()


def test_backstop_fills_while_we_cancel_it(tmp_path: Path) -> None:
    """The race: our market exit starts, the backstop fills just before the cancel lands -> broker wins."""
    market = Market()
    market.prices["DOGE/USD"] = D("0.2")
    _, journal, broker, executor, monitor = build(tmp_path / "j.sqlite", market)
    pos = enter(executor, "DOGE/USD").position
    real_cancel = broker.cancel_order

    def cancel_after_fill(order_id: str):
        broker.on_price("DOGE/USD", D("0.1955"))  # fills first (stop 0.196, limit 0.19404)
        return real_cancel(order_id)

    broker.cancel_order = cancel_after_fill  # type: ignore[method-assign]
    market.prices["DOGE/USD"] = D("0.1955")
    market.now += timedelta(minutes=1)
    closed = monitor.run_once()
    assert [c.exit_reason for c in closed] == ["backstop"]
    assert closed[0].exit_qty == pos.qty
    sells = [o for o in journal.orders(position_id=pos.id) if o.purpose == "exit"]
    assert sells == []  # no market sell was sent: nothing left to sell
    journal.close()


def test_position_closed_outside_the_bot_is_external(tmp_path: Path) -> None:
    market = Market()
    market.prices["BTC/USD"] = D(100)
    _, journal, broker, executor, monitor = build(
        tmp_path / "j.sqlite", market, exits={"trail_percent": 2, "backstop": {"enabled": False}}
    )
    pos = enter(executor).position
    broker.sell_qty("BTC/USD", pos.qty, "manual-close")  # someone sells by hand
    market.now += timedelta(minutes=1)
    closed = monitor.run_once()
    assert [c.exit_reason for c in closed] == ["external"]
    journal.close()


def test_max_hold_exit(tmp_path: Path) -> None:
    market = Market()
    market.prices["BTC/USD"] = D(100)
    settings_kw = {"exits": {"trail_percent": 2, "max_hold_hours": 1, "backstop": {"enabled": False}}}
    _, journal, _, executor, monitor = build(tmp_path / "j.sqlite", market, **settings_kw)
    enter(executor)
    market.now = T0 + timedelta(minutes=59)
    assert monitor.run_once() == []
    market.now = T0 + timedelta(hours=1, minutes=1)
    assert [c.exit_reason for c in monitor.run_once()] == ["max_hold"]
    journal.close()


def test_rerun_of_same_cycle_never_buys_twice(tmp_path: Path) -> None:
    market = Market()
    market.prices["BTC/USD"] = D(100)
    _, journal, broker, executor, _ = build(tmp_path / "j.sqlite", market)
    first = enter(executor)
    second = enter(executor)
    assert first.status == "opened" and second.status == "exists"
    assert broker.get_account().cash == D(900)
    journal.close()


@pytest.mark.parametrize("notional", ["5000"])
def test_rejected_entry_is_logged_not_retried(tmp_path: Path, notional: str) -> None:
    market = Market()
    market.prices["BTC/USD"] = D(100)
    _, journal, _, executor, _ = build(tmp_path / "j.sqlite", market)
    outcome = enter(executor, notional=notional)
    assert outcome.status == "rejected"
    [order] = journal.orders()
    assert order.status == "rejected" and "insufficient balance" in order.error
    assert journal.open_positions() == []
    journal.close()


def test_one_entry_cycle_wired_end_to_end(tmp_path: Path) -> None:
    """How the trader wires one entry cycle: reconcile -> risk state -> engine -> journal -> orders."""
    from kronos_bot.domain import (
        GateResults,
        KronosResult,
        KronosSignal,
        SentimentResult,
        SentimentVerdict,
        TechnicalResult,
        TechnicalVerdict,
    )
    from kronos_bot.trader import engine
    from kronos_bot.trader.reconcile import Reconciler

    market = Market()
    market.prices.update({"BTC/USD": D(100), "ETH/USD": D(2000)})
    settings, journal, broker, executor, _monitor = build(tmp_path / "j.sqlite", market, risk={"max_open_positions": 1})
    reconciler = Reconciler(broker, journal, executor, settings, price_source=market.price, clock=market.clock)

    def gates(symbol: str) -> GateResults:
        return GateResults(
            symbol,
            TechnicalResult(TechnicalVerdict.PASS, close=float(market.prices[symbol])),
            SentimentResult(SentimentVerdict.BULLISH, score=0.4),
            KronosResult(KronosSignal.UP, confidence=0.7, actionable=True),
        )

    cycle_time = market.now
    cycle = journal.start_cycle("entry", cycle_time)
    reconciler.run(cycle_time)
    all_gates = [gates("BTC/USD"), gates("ETH/USD")]
    decisions = engine.decide_all(all_gates, executor.risk_state(cycle_time), settings, cycle_time)
    ids = [
        journal.record_decision(
            d,
            g,
            cycle_id=cycle,
            config_fingerprint=settings.fingerprint(),
            model_revision=settings.forecaster.model_revision,
        )
        for d, g in zip(decisions, all_gates, strict=True)
    ]
    outcomes = executor.execute(
        decisions, cycle_time, ids, price_hints={g.symbol: D(str(g.technical.close)) for g in all_gates}
    )
    journal.end_cycle(cycle, market.now, "ok", {"entered": len(outcomes)})

    assert [d.action for d in decisions] == [Action.ENTER, Action.SKIP]
    assert decisions[1].reasons == ["max_open_positions"]
    assert [o.status for o in outcomes] == ["opened"]
    assert outcomes[0].position.decision_id == ids[0] and outcomes[0].position.tier == "triple_confirmed"
    assert journal.recent_decisions(symbol="BTC/USD")[0]["config_fingerprint"] == settings.fingerprint()
    # and the next cycle sees the position
    again = engine.decide_all(all_gates, executor.risk_state(market.now), settings, market.now)
    assert again[0].reasons == ["position_open"]
    journal.close()
