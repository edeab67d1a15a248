"""Price sanity: one bad print never moves a stop or sells; a confirmed crash still exits at once; bad bars.

The exit monitor is wired as the trader wires it: a PriceBook over the real market-data client (alpaca-py
against the fake Alpaca) with `exits.max_price_jump_percent`, trading through AlpacaBroker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kronos_bot.config import BarsSettings
from kronos_bot.market.bars import AlpacaMarketData, BarsProblem, ValidBars, validate_bars
from kronos_bot.trader.exit_monitor import ExitMonitor
from kronos_bot.trader.price_guard import GuardState, Outcome, screen
from kronos_bot.trader.prices import PriceBook
from tests.broker_support import Rig, captured_logs, enter, standard_rig
from tests.fakealpaca import FakeAlpaca
from tests.trader_support import fixture_bars

D = Decimal
SYMBOL = "BTC/USD"
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def rig(fake_alpaca: FakeAlpaca, tmp_path: Path) -> Iterator[Rig]:
    r = standard_rig(fake_alpaca, tmp_path / "j.sqlite", bars={"data_url_override": fake_alpaca.base_url})
    book = PriceBook(
        AlpacaMarketData(r.settings), clock=r.now, max_jump_percent=r.settings.exits.max_price_jump_percent
    )
    r.monitor = ExitMonitor(r.broker, r.journal, r.executor, r.settings, book.price, clock=r.now)
    r.book = book  # type: ignore[attr-defined]
    yield r
    r.journal.close()


def tick(rig: Rig, trade: str, quote: str | None = None) -> list[Any]:
    """One exit tick: the latest trade at `trade`, the quote mid at `quote` (default: the same)."""
    rig.clock[0] += timedelta(minutes=1)
    rig.fake.trading.set_price(SYMBOL, trade, quote=False)
    mid = float(quote or trade)
    rig.fake.market.set_latest_quote(SYMBOL, mid * 0.9999, mid * 1.0001)
    rig.book.refresh([SYMBOL])  # type: ignore[attr-defined]  # as trader.run_exit_check does
    return rig.monitor.run_once()


def test_a_single_10x_print_neither_raises_the_hwm_nor_sells(rig: Rig) -> None:
    pos = enter(rig).position
    assert tick(rig, "100.5") == []  # first price: confirmed by the quote
    with captured_logs() as logs:
        assert tick(rig, "1005", quote="100.5") == []  # the bad print; the quote disagrees
        held = rig.journal.get_position(pos.id)
        assert held.hwm == D("100.5")
        assert tick(rig, "100.4") == []  # back to normal: the stop never saw 1005, nothing sold
    assert rig.journal.get_position(pos.id).is_open
    assert rig.journal.get_position(pos.id).hwm == D("100.5")
    suspect = [e for e in logs if e["event"] == "price.suspect"]
    ended = [e for e in logs if e["event"] == "price.suspect_end"]
    assert len(suspect) == 1 and suspect[0]["symbol"] == SYMBOL and suspect[0]["jump_percent"] > 800
    assert len(ended) == 1 and ended[0]["outcome"] == "dropped"
    assert [e["event"] for e in logs].count("exit.no_price") == 1  # said once for the episode


def test_a_bad_print_on_every_tick_is_never_acted_on(rig: Rig) -> None:
    pos = enter(rig).position
    tick(rig, "100")
    with captured_logs() as logs:
        for bad in ("9.9", "1000", "9.8", "1010"):  # each disagrees with the last (and with the quote)
            assert tick(rig, bad, quote="100") == []
    assert rig.journal.get_position(pos.id).hwm == D(100) and rig.journal.get_position(pos.id).is_open
    assert [e["event"] for e in logs].count("price.suspect") == 1


def test_a_crash_confirmed_by_the_quote_exits_on_that_tick(rig: Rig) -> None:
    enter(rig)
    tick(rig, "100")
    with captured_logs() as logs:
        closed = tick(rig, "85", quote="85.1")
    assert [c.exit_reason for c in closed] == ["trailing_stop"]
    assert closed[0].exit_price == D(85)
    assert [e["event"] for e in logs].count("price.jump_confirmed") == 1


def test_a_crash_without_a_quote_exits_on_the_next_tick_that_agrees(rig: Rig) -> None:
    enter(rig)
    tick(rig, "100")
    assert tick(rig, "85", quote="100") == []  # the quote is stale: held back
    closed = tick(rig, "85.2", quote="100")  # the next tick agrees with the suspect price: confirmed
    assert [c.exit_reason for c in closed] == ["trailing_stop"]


def test_the_last_closed_bar_range_is_a_reference_after_a_start(rig: Rig) -> None:
    """Right after a start there is no accepted price yet; the entry cycle's bar range vouches for one."""
    rig.fake.market.set_latest_quote(SYMBOL, 49.9, 50.1)  # a quote that would not confirm 100
    book: PriceBook = rig.book  # type: ignore[attr-defined]
    assert book.price(SYMBOL) is None and book.suspect(SYMBOL)  # no reference: held back
    fresh = PriceBook(book.market, clock=rig.now, max_jump_percent=8.0)
    fresh.note_bars({SYMBOL: (D(99), D(102))})
    assert fresh.price(SYMBOL) == D(100) and not fresh.suspect(SYMBOL)


def test_screen_is_pure_and_symmetric() -> None:
    state = GuardState(accepted=D(100))
    assert screen(state, D("107.9"), T0, 8.0).outcome is Outcome.ACCEPTED
    held = screen(state, D("109"), T0, 8.0)
    assert held.outcome is Outcome.SUSPECT and held.started and held.state.accepted == D(100)
    assert screen(held.state, D("109.5"), T0, 8.0).outcome is Outcome.CONFIRMED
    assert screen(held.state, D("100.2"), T0, 8.0).outcome is Outcome.ACCEPTED  # dropped
    assert screen(state, D("91"), T0, 8.0, second=D("91.1")).outcome is Outcome.CONFIRMED
    assert screen(GuardState(), D(5), T0, 8.0).outcome is Outcome.SUSPECT  # no reference at all
    assert screen(GuardState(), D(5), T0, 8.0, second=D(5)).outcome is Outcome.ACCEPTED


# ----- bars -----


def _window(symbol: str = SYMBOL) -> tuple[Any, datetime]:
    df = fixture_bars(symbol)
    now = df.index[-1].to_pydatetime() + timedelta(hours=1, seconds=30)
    return df, now


def test_a_10x_bar_is_rejected_as_a_range_jump() -> None:
    df, now = _window()
    df.iloc[-3, :4] = df.iloc[-4]["close"] * 10  # a bar at ten times the price
    result = validate_bars(SYMBOL, df, now, BarsSettings())
    assert isinstance(result, BarsProblem) and result.reason == "range_jump"
    assert "max bars.max_range_multiple 25" in result.detail


def test_a_wide_bar_in_range_of_real_crashes_passes_and_the_multiple_is_configurable() -> None:
    df, now = _window()
    i = -5
    wide = (df["high"] - df["low"]).median() * 12  # about what the August 2024 crash printed
    df.iloc[i, df.columns.get_loc("low")] = df.iloc[i]["low"] - wide
    assert isinstance(validate_bars(SYMBOL, df, now, BarsSettings()), ValidBars)
    strict = validate_bars(SYMBOL, df, now, BarsSettings(max_range_multiple=5))
    assert isinstance(strict, BarsProblem) and strict.reason == "range_jump"


@pytest.mark.parametrize("symbol", ["BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD"])
def test_real_hourly_bars_never_trip_the_range_check(symbol: str) -> None:
    df, _ = _window(symbol)
    settings = BarsSettings()
    for end in range(settings.count + 10, len(df), 7):
        window = df.iloc[:end]
        now = window.index[-1].to_pydatetime() + timedelta(hours=1, seconds=30)
        assert isinstance(validate_bars(symbol, window, now, settings), ValidBars), window.index[-1]


def test_an_all_zero_volume_window_is_kept_but_warned_once(fake_alpaca: FakeAlpaca, tmp_path: Path) -> None:
    df, now = _window()
    df["volume"] = 0.0
    result = validate_bars(SYMBOL, df, now, BarsSettings())
    assert isinstance(result, ValidBars) and result.warnings == ("zero_volume",)
    fake_alpaca.market.set_bars(SYMBOL, df)
    from tests.trader_support import settings_for

    market = AlpacaMarketData(settings_for(tmp_path, fake_alpaca.base_url))
    with captured_logs() as logs:
        for _ in range(3):
            assert not isinstance(market.closed_bars([SYMBOL], now)[SYMBOL], BarsProblem)
        fake_alpaca.market.set_bars(SYMBOL, fixture_bars(SYMBOL))
        market.closed_bars([SYMBOL], now)
    events = [e["event"] for e in logs]
    assert events.count("data.zero_volume") == 1 and events.count("data.zero_volume_end") == 1
