"""Trailing-stop rules, pure: a position's stop state + a price -> the new state and maybe an exit reason.

Alpaca has no trailing-stop orders for crypto, so the trail is ours. The state (entry, high-water mark,
current stop) lives in the journal; the exit monitor (`exit_monitor.py`) feeds it the latest trade
price every minute, and the backtest feeds it bars. Both go through `_evaluate`, so they cannot drift.

Semantics (percentages from `settings.exits`):
  * HWM = highest price seen since entry (never lowered).
  * Trailing level = HWM x (1 - trail_percent/100). It is *armed* only once the HWM is at least
    entry x (1 + trail_activation_percent/100), i.e. once the position has been that far in profit --
    Freqtrade's `trailing_stop_positive_offset`. Before that only the hard stop applies.
  * Hard stop = entry x (1 - stop_loss_percent/100) (0 = off).
  * Stop = the higher of the two that apply; exit when price <= stop. The reason is `trailing_stop` when
    the armed trail is the binding level, else `stop_loss`.
  * Max holding time (0 = off) closes with `max_hold`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache

from kronos_bot.config import ExitSettings

HUNDRED = Decimal(100)


class ExitReason(StrEnum):
    TRAILING_STOP = "trailing_stop"
    STOP_LOSS = "stop_loss"
    MAX_HOLD = "max_hold"
    BACKSTOP = "backstop"  # the broker-side stop_limit filled (while we were down or racing us)
    EXTERNAL = "external"  # the position vanished at the broker (closed by hand, liquidated...)
    DUST = "dust"  # the remaining quantity is below the asset's minimum order size: cannot be sold


@lru_cache(maxsize=256)
def _pct(value: float) -> Decimal:
    """A percent setting as a Decimal fraction (remembered: every stop check of every tick asks)."""
    return Decimal(str(value)) / HUNDRED


@dataclass(frozen=True)
class StopState:
    """What the trailing stop remembers about one position (mirrors journal columns)."""

    entry_price: Decimal
    entry_time: datetime
    hwm: Decimal
    stop_price: Decimal | None
    trail_armed: bool = False


@dataclass(frozen=True)
class BarExit:
    """Result of the bar-based check: new state, exit reason and the price the exit is assumed to fill at."""

    state: StopState
    reason: ExitReason | None
    price: Decimal | None


def stop_levels(entry: Decimal, hwm: Decimal, exits: ExitSettings) -> tuple[Decimal | None, bool, Decimal | None]:
    """(effective stop, trail armed?, hard stop) for an entry price and a high-water mark."""
    hard = entry * (1 - _pct(exits.stop_loss_percent)) if exits.stop_loss_percent > 0 else None
    armed = hwm >= entry * (1 + _pct(exits.trail_activation_percent))
    trail = hwm * (1 - _pct(exits.trail_percent)) if armed else None
    candidates = [level for level in (hard, trail) if level is not None]
    return (max(candidates) if candidates else None), armed, hard


def initial_state(entry_price: Decimal, entry_time: datetime, exits: ExitSettings) -> StopState:
    """The stop state right after an entry fill."""
    stop, armed, _ = stop_levels(entry_price, entry_price, exits)
    return StopState(
        entry_price=entry_price, entry_time=entry_time, hwm=entry_price, stop_price=stop, trail_armed=armed
    )


def _raise_hwm(state: StopState, high: Decimal, exits: ExitSettings) -> StopState:
    """HWM up to `high` (never down); stop recomputed and never lowered."""
    hwm = max(state.hwm, high)
    stop, armed, _ = stop_levels(state.entry_price, hwm, exits)
    if state.stop_price is not None and (stop is None or stop < state.stop_price):
        stop = state.stop_price  # a stop only ratchets up, even if settings changed under a running position
    return replace(state, hwm=hwm, stop_price=stop, trail_armed=armed or state.trail_armed)


def _reason_at(state: StopState, exits: ExitSettings) -> ExitReason:
    _, _, hard = stop_levels(state.entry_price, state.hwm, exits)
    if state.trail_armed and (hard is None or (state.stop_price is not None and state.stop_price > hard)):
        return ExitReason.TRAILING_STOP
    return ExitReason.STOP_LOSS


def _evaluate(state: StopState, price: Decimal, exits: ExitSettings, now: datetime) -> ExitReason | None:
    """The shared core: is `price` at or through the current stop, or is the position held too long?"""
    if state.stop_price is not None and price <= state.stop_price:
        return _reason_at(state, exits)
    if exits.max_hold_hours > 0 and now - state.entry_time >= timedelta(hours=exits.max_hold_hours):
        return ExitReason.MAX_HOLD
    return None


def update_stop(
    state: StopState, price: Decimal, exits: ExitSettings, now: datetime
) -> tuple[StopState, ExitReason | None]:
    """Tick variant (the live exit monitor): raise the HWM with `price`, then check `price` against the stop.

    Raising first is safe with a single price: the trail sits strictly below the new HWM, so a new high
    can never trigger its own exit; only the hard stop or an older, higher stop can.
    """
    new_state = _raise_hwm(state, price, exits)
    return new_state, _evaluate(new_state, price, exits, now)


def update_stop_bar(
    state: StopState,
    open_: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    exits: ExitSettings,
    bar_end: datetime,
) -> BarExit:
    """Bar variant (backtests), deliberately conservative about the unknown order of high and low.

    1. The bar's LOW is checked against the stop as it stood BEFORE this bar. We do not let the bar's high
       raise the stop and then exit on the same bar's low: that assumes the high came first and books an
       exit at a trailing level the market may never have offered. A hit fills at the stop, or at the
       open when the bar gapped below it.
    2. Only then is the HWM raised with the bar's HIGH, and the CLOSE is checked against the raised stop
       (what the live monitor would see at the end of the bar); a hit fills at the close.
    3. Max holding time is checked at the bar's end and fills at the close.
    """
    if state.stop_price is not None and low <= state.stop_price:
        fill = min(open_, state.stop_price)
        return BarExit(state=state, reason=_reason_at(state, exits), price=fill)
    raised = _raise_hwm(state, high, exits)
    reason = _evaluate(raised, close, exits, bar_end)
    return BarExit(state=raised, reason=reason, price=close if reason else None)


def backstop_prices(stop: Decimal, limit_offset_percent: float) -> tuple[Decimal, Decimal]:
    """(stop_price, limit_price) of the broker-side stop_limit sell protecting a position."""
    return stop, stop * (1 - _pct(limit_offset_percent))


def backstop_needs_replace(current_backstop_stop: Decimal | None, stop: Decimal | None, step_percent: float) -> bool:
    """Move the backstop only when the stop rose by more than `step_percent` (limits replace churn)."""
    if stop is None or current_backstop_stop is None:
        return False
    return stop > current_backstop_stop * (1 + _pct(step_percent))
