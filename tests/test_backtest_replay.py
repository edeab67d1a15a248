"""The backtest's account side on scripted bars: fills, fees, exits, tiers and risk rules, checked by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from kronos_bot.backtest.bar_exits import monitor_ticks
from kronos_bot.backtest.data import Bar, BarStore
from kronos_bot.backtest.news_archive import ArchiveNewsProvider, load_news_archive
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.runner import run_backtest
from kronos_bot.broker.sim import SimBroker
from kronos_bot.domain import Action, Decision, Tier
from kronos_bot.trader.execution import Executor
from kronos_bot.trader.exit_monitor import ExitMonitor
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.stops import initial_state, update_stop_bar
from tests.backtest_support import HOUR, T0, ScriptedForecaster, flat_then, settings, trend, up_at

D = Decimal
STEP = D("0.000000001")
EXITS = {"trail_percent": 2, "trail_activation_percent": 0, "stop_loss_percent": 5}
WARMUP = 70
T_ENTRY = T0 + WARMUP * HOUR  # first decision of the scripted runs (bars before it are flat)


def round_down(x: Decimal) -> Decimal:
    return (x / STEP).to_integral_value(rounding=ROUND_DOWN) * STEP


def run(bars: dict, s, *, forecaster, hours: int, start=T_ENTRY, **kw):
    return run_backtest(s, BarStore(bars), Period(start, start + hours * HOUR), forecaster=forecaster, **kw)


def test_fees_and_slippage_land_in_pnl_as_computed_by_hand() -> None:
    s = settings(exits=EXITS)  # fee 0.25 %, slippage 5 bps, fixed 100 USD x 0.6 (kronos_only)
    bars = flat_then(
        [
            (100, 100, 100, 100),  # T_ENTRY: the entry fills at this open
            (100, 103, 99.5, 102),  # HWM -> 103, stop -> 100.94; close above it
            (101.5, 101.8, 99, 100),  # low through 100.94 -> trailing stop at 100.94
            (100, 100, 100, 100),
            (100, 100, 100, 100),
        ]
    )
    forecaster = ScriptedForecaster(up_at(T_ENTRY, T_ENTRY + 3 * HOUR))
    result = run({"BTC/USD": bars}, s, forecaster=forecaster, hours=5)

    assert len(result.positions) == 1
    p = result.positions[0]
    fill = D(100) * D("1.0005")
    filled = round_down(D("60.00") / fill)
    held = round_down(filled * D("0.9975"))
    assert (p.tier, p.entry_time, p.entry_price, p.qty) == ("kronos_only", T_ENTRY, fill, held)
    assert p.entry_cost == filled * fill and p.entry_fee == filled - held
    sell = D("100.94") * D("0.9995")  # the trailing stop level minus slippage
    gross = held * sell
    proceeds = gross - gross * D("0.0025")
    assert (p.exit_reason, p.exit_time, p.exit_price, p.hwm) == ("trailing_stop", T_ENTRY + 3 * HOUR, sell, D(103))
    assert p.proceeds == proceeds
    assert p.pnl == proceeds - filled * fill
    # All cash again. (The sim broker debits the whole notional; the journal's cost is the rounded-down
    # filled qty x price, so the two differ by less than one qty step x price.)
    assert result.equity[-1].equity == D(10_000) - D("60.00") + proceeds
    assert abs(result.equity[-1].equity - (D(10_000) + p.pnl)) < STEP * fill

    # The engine's risk rules apply: the exit at T+3h starts a 60-minute cooldown for the next decision.
    at_exit = [d for d in result.decisions if d["time"] == (T_ENTRY + 3 * HOUR).isoformat()]
    assert at_exit[0]["action"] == "SKIP" and "cooldown" in at_exit[0]["reasons"]


def test_exit_path_matches_the_live_exit_monitor(tmp_path: Path) -> None:
    """Bars of a single price (open = high = low = close) are ticks; both paths must exit identically."""
    path = ["100.3", "101", "103", "102.5", "105", "104", "102.9", "102", "101"]
    s = settings(exits=EXITS)
    bars = flat_then([(100, 100, 100, 100)] + [(float(p),) * 4 for p in path])
    result = run({"BTC/USD": bars}, s, forecaster=ScriptedForecaster(up_at(T_ENTRY)), hours=len(path) + 1)
    replayed = result.positions[0]

    prices = {"BTC/USD": D(100)}
    clock = [T_ENTRY]
    journal = Journal(tmp_path / "live.sqlite")
    broker = SimBroker(journal, s.broker.sim, prices.get, clock=lambda: clock[0])
    executor = Executor(broker, journal, s, clock=lambda: clock[0], sleep=lambda _: None)
    monitor = ExitMonitor(broker, journal, executor, s, prices.get, clock=lambda: clock[0])
    decision = Decision("BTC/USD", Action.ENTER, Tier.KRONOS_ONLY, D("60.00"), ["kronos_only"], T_ENTRY)
    executor.enter(decision, cycle_time=T_ENTRY)
    closed = []
    for k, price in enumerate(["100", *path]):
        clock[0] = T_ENTRY + (k + 1) * HOUR  # each bar's price, seen at the bar's end
        prices["BTC/USD"] = D(price)
        closed += monitor.run_once()
        if closed:
            break
    live = closed[0]
    journal.close()

    fields = ("entry_price", "qty", "exit_time", "exit_price", "exit_reason", "hwm", "proceeds", "pnl")
    assert {f: getattr(replayed, f) for f in fields} == {f: getattr(live, f) for f in fields}
    assert live.exit_reason == "trailing_stop" and live.hwm == D(105)


def test_intra_bar_rule_never_exits_on_a_low_after_raising_the_stop_with_the_same_bars_high() -> None:
    s = settings(exits=EXITS)
    bars = flat_then(
        [
            (100, 100, 100, 100),
            (100, 110, 99, 108.5),  # low 99 is above the pre-bar stop 98.049; the high lifts the stop to 107.8
            (108.5, 108.6, 107, 108),  # this bar's low reaches 107.8: exit at the stop
            (108, 108, 108, 108),
        ]
    )
    result = run({"BTC/USD": bars}, s, forecaster=ScriptedForecaster(up_at(T_ENTRY)), hours=4)
    p = result.positions[0]
    assert p.exit_reason == "trailing_stop"
    assert p.exit_time == T_ENTRY + 3 * HOUR  # not on the bar with both the high and the low
    assert p.hwm == D(110) and p.exit_price == D("107.8") * D("0.9995")


def test_monitor_ticks_follow_update_stop_bar() -> None:
    s = settings(exits=EXITS)
    state = initial_state(D(100), T0, s.exits)  # stop 98
    gap = Bar(T0, D(97), D(99), D(96), D(98))
    verdict, ticks = monitor_ticks(state, gap, s.exits)
    assert verdict == update_stop_bar(state, D(97), D(99), D(96), D(98), s.exits, T0 + HOUR)
    assert [(t.time, t.price) for t in ticks] == [(T0 + HOUR, D(97))]  # gapped below the stop: the open
    up = Bar(T0, D(100), D(104), D(99), D(103))
    verdict, ticks = monitor_ticks(state, up, s.exits)
    assert verdict.reason is None and verdict.state.hwm == D(104)
    assert [(t.time, t.price) for t in ticks] == [(T0, D(104))]  # only the raise; no exit tick
    quiet = Bar(T0, D(99.5), D(99.9), D(99.1), D(99.2))
    assert monitor_ticks(state, quiet, s.exits)[1] == []


def test_tier_sizes_are_full_and_sixty_percent_of_the_base(tmp_path: Path) -> None:
    archive = tmp_path / "news.jsonl"
    archive.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": i,
                    "created_at": (T_ENTRY - timedelta(hours=i + 1)).isoformat(),
                    "headline": "Bitcoin surges to a record high as institutional adoption soars",
                    "summary": "Strong inflows, bullish rally.",
                    "symbols": ["BTCUSD"],
                }
            )
            for i in range(3)
        )
        + "\n"
    )
    s = settings(["BTC/USD", "ETH/USD"], exits=EXITS, gates={"technical": {"check_rsi": False, "check_macd": False}})
    bars = {sym: trend(WARMUP + 3) for sym in ("BTC/USD", "ETH/USD")}
    news = ArchiveNewsProvider(load_news_archive(archive))
    result = run(bars, s, forecaster=ScriptedForecaster(up_at(T_ENTRY)), hours=2, news=news, news_note="archive")
    first = {d["symbol"]: d for d in result.decisions if d["time"] == T_ENTRY.isoformat()}
    assert (first["BTC/USD"]["sentiment"], first["BTC/USD"]["technical"]) == ("BULLISH", "PASS")
    assert (first["BTC/USD"]["tier"], first["BTC/USD"]["notional"]) == ("triple_confirmed", "100.00")
    assert (first["ETH/USD"]["sentiment"], first["ETH/USD"]["tier"]) == ("NO_DATA", "kronos_only")
    assert first["ETH/USD"]["notional"] == "60.00"
    costs = {p.symbol: p.entry_cost for p in result.positions}
    assert D("99.99") < costs["BTC/USD"] <= D(100) and D("59.99") < costs["ETH/USD"] <= D(60)


def test_max_open_positions_counts_entries_of_the_same_hour() -> None:
    s = settings(["BTC/USD", "ETH/USD"], exits=EXITS, risk={"max_open_positions": 1})
    bars = {sym: flat_then([(100, 100, 100, 100)] * 2) for sym in ("BTC/USD", "ETH/USD")}
    result = run(bars, s, forecaster=ScriptedForecaster(up_at(T_ENTRY)), hours=2)
    first = {d["symbol"]: d for d in result.decisions if d["time"] == T_ENTRY.isoformat()}
    assert first["BTC/USD"]["action"] == "ENTER"
    assert first["ETH/USD"]["action"] == "SKIP" and "max_open_positions" in first["ETH/USD"]["reasons"]
    assert [p.symbol for p in result.positions] == ["BTC/USD"]


def test_a_symbol_with_invalid_bars_is_skipped_with_the_live_reason() -> None:
    s = settings(["BTC/USD", "ETH/USD"], exits=EXITS)
    eth = flat_then([(100, 100, 100, 100)] * 2)
    eth = eth.drop(eth.index[WARMUP - 10 : WARMUP - 4])  # six missing hours > bars.max_missing_bars
    bars = {"BTC/USD": flat_then([(100, 100, 100, 100)] * 2), "ETH/USD": eth}
    result = run(bars, s, forecaster=ScriptedForecaster(up_at(T_ENTRY)), hours=1)
    eth_row = next(d for d in result.decisions if d["symbol"] == "ETH/USD")
    assert eth_row["action"] == "SKIP" and eth_row["reasons"] == "data_invalid"
    assert [p.symbol for p in result.positions] == ["BTC/USD"]
