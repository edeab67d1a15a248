"""Pure trailing-stop rules: HWM ratchet, activation offset, hard stop, max hold, and the bar variant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kronos_bot.config import ExitSettings
from kronos_bot.trader.stops import (
    ExitReason,
    StopState,
    backstop_needs_replace,
    backstop_prices,
    initial_state,
    update_stop,
    update_stop_bar,
)

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
D = Decimal


def test_initial_state_has_hard_stop_only_when_activation_pending() -> None:
    ex = ExitSettings(trail_percent=2, trail_activation_percent=1, stop_loss_percent=5)
    s = initial_state(D(100), T0, ex)
    assert s.hwm == D(100) and s.stop_price == D(95) and not s.trail_armed


def test_trail_from_entry_when_no_activation() -> None:
    ex = ExitSettings(trail_percent=2, trail_activation_percent=0, stop_loss_percent=5)
    s = initial_state(D(100), T0, ex)
    assert s.trail_armed and s.stop_price == D(98)


def test_ratchet_along_a_price_path() -> None:
    ex = ExitSettings(trail_percent=2, trail_activation_percent=1, stop_loss_percent=5)
    s = initial_state(D(100), T0, ex)
    path = [D("100.5"), D("101"), D("104"), D("103"), D("110"), D("108"), D("107.8")]
    stops = []
    reason = None
    for i, price in enumerate(path):
        s, reason = update_stop(s, price, ex, T0 + timedelta(minutes=i))
        stops.append(s.stop_price)
        if reason:
            break
    # not armed at 100.5; armed at 101 (1 % profit): 101 x 0.98 = 98.98; then 104 -> 101.92; 110 -> 107.8
    assert stops[0] == D(95)
    assert stops[1] == D("98.98")
    assert stops[2] == D("101.92") and stops[3] == D("101.92")  # never lowered
    assert stops[4] == D("107.80")
    assert reason is ExitReason.TRAILING_STOP and s.hwm == D(110)
    assert len(stops) == 7  # exited exactly at 107.8 (price <= stop)


def test_stop_loss_before_activation() -> None:
    ex = ExitSettings(trail_percent=2, trail_activation_percent=3, stop_loss_percent=5)
    s = initial_state(D(100), T0, ex)
    s, reason = update_stop(s, D("102"), ex, T0)
    assert reason is None and not s.trail_armed
    s, reason = update_stop(s, D("95"), ex, T0)
    assert reason is ExitReason.STOP_LOSS


def test_stop_loss_off_and_no_trail_means_no_stop() -> None:
    ex = ExitSettings(trail_percent=2, trail_activation_percent=5, stop_loss_percent=0)
    s = initial_state(D(100), T0, ex)
    assert s.stop_price is None
    s, reason = update_stop(s, D(50), ex, T0)
    assert reason is None


def test_max_hold() -> None:
    ex = ExitSettings(max_hold_hours=24)
    s = initial_state(D(100), T0, ex)
    assert update_stop(s, D(100), ex, T0 + timedelta(hours=23))[1] is None
    assert update_stop(s, D(100), ex, T0 + timedelta(hours=24))[1] is ExitReason.MAX_HOLD


def test_a_new_high_never_triggers_its_own_exit() -> None:
    ex = ExitSettings(trail_percent=0.01, stop_loss_percent=0)
    s = initial_state(D(100), T0, ex)
    for price in (D("100.001"), D("120"), D("150")):
        s, reason = update_stop(s, price, ex, T0)
        assert reason is None


def test_stop_never_lowered_when_settings_loosen() -> None:
    tight = ExitSettings(trail_percent=1)
    s = initial_state(D(100), T0, tight)
    s, _ = update_stop(s, D(110), tight, T0)
    assert s.stop_price == D("108.90")
    loose = ExitSettings(trail_percent=5)
    s2, _ = update_stop(s, D(110), loose, T0)
    assert s2.stop_price == D("108.90")


# ----- bar variant: conservative ordering -----


def test_bar_checks_low_against_old_stop_before_raising_hwm() -> None:
    ex = ExitSettings(trail_percent=2, stop_loss_percent=5)
    s = initial_state(D(100), T0, ex)  # stop 98
    # A wide bar: high 110 would raise the stop to 107.8 and the low 99 would then "exit at 107.8" --
    # an optimistic fill. Conservative: low 99 > old stop 98 -> no exit; HWM 110 afterwards; close 109 ok.
    r = update_stop_bar(s, D(100), D(110), D(99), D(109), ex, T0 + timedelta(hours=1))
    assert r.reason is None and r.state.hwm == D(110) and r.state.stop_price == D("107.80")


def test_bar_low_hits_old_stop_fills_at_stop_or_gap_open() -> None:
    ex = ExitSettings(trail_percent=2, stop_loss_percent=5)
    s = initial_state(D(100), T0, ex)
    r = update_stop_bar(s, D(99), D(101), D(97), D(100), ex, T0)
    assert r.reason is ExitReason.TRAILING_STOP and r.price == D(98) and r.state == s
    gap = update_stop_bar(s, D(96), D(97), D(90), D(91), ex, T0)
    assert gap.price == D(96)


def test_bar_close_below_raised_stop_exits_at_close() -> None:
    ex = ExitSettings(trail_percent=2, stop_loss_percent=5)
    s = initial_state(D(100), T0, ex)
    r = update_stop_bar(s, D(100), D(110), D(99), D(107), ex, T0)
    assert r.reason is ExitReason.TRAILING_STOP and r.price == D(107)


def test_bar_and_tick_share_the_core() -> None:
    ex = ExitSettings(trail_percent=3, trail_activation_percent=1, stop_loss_percent=4)
    s = initial_state(D(50), T0, ex)
    tick_state, _ = update_stop(s, D(60), ex, T0)
    bar = update_stop_bar(s, D(55), D(60), D(55), D(59), ex, T0)
    assert bar.state == tick_state


# ----- backstop helpers -----


def test_backstop_prices_and_replace_step() -> None:
    stop, limit = backstop_prices(D(100), 1.0)
    assert (stop, limit) == (D(100), D(99))
    assert not backstop_needs_replace(D(100), D("100.5"), 0.5)
    assert backstop_needs_replace(D(100), D("100.51"), 0.5)
    assert not backstop_needs_replace(None, D(100), 0.5)


@pytest.mark.parametrize("price", [D("94.99"), D(95)])
def test_stop_loss_inclusive(price: Decimal) -> None:
    ex = ExitSettings(trail_percent=2, trail_activation_percent=10, stop_loss_percent=5)
    _, reason = update_stop(StopState(D(100), T0, D(100), D(95)), price, ex, T0)
    assert reason is ExitReason.STOP_LOSS
