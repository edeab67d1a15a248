"""The intra-bar exit rule of backtests, carried out by the live exit monitor.

A bar only tells us its open, high, low and close, not their order. `exits.update_stop_bar` decides
conservatively (see its docstring):
  1. the bar's LOW is checked against the stop as it stood BEFORE the bar; a hit exits at the stop, or
     at the open when the bar gapped below it -- the high of the same bar never raises the stop first;
  2. otherwise the HWM is raised to the bar's HIGH and the CLOSE is checked against the raised stop;
     a hit exits at the close;
  3. max holding time is checked at the bar's end, exiting at the close.

To carry that verdict out with the very code that trades, it is turned into at most two price ticks fed
to the live `ExitMonitor.check` (which uses the tick rule `exits.update_stop`: raise the HWM with the
price, then compare the price with the stop):
  - when the bar raised the HWM: a tick at the new HWM, stamped at the bar's START (it raises HWM and
    stop exactly like step 2 -- both use `exits._raise_hwm` -- and cannot exit: the stop is below the
    HWM, and max-hold was already checked at that instant at the previous bar's end -- when that bar was
    missing and max-hold is due, the raise is skipped so the HWM price can never be a fill);
  - when the verdict is an exit: a tick at the bar's END at its fill price (the stop, the open, or the
    close). The monitor then sees price <= stop (or max-hold) exactly where the bar rule does, and sells
    through the executor and the simulated broker at that price minus slippage.
A bar without a new high and without an exit needs no tick: the monitor would change nothing (a close
tick below the HWM and above the stop is a no-op), so it is skipped to keep replays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from kronos_bot.backtest.data import Bar
from kronos_bot.config import ExitSettings
from kronos_bot.trader.stops import BarExit, StopState, update_stop_bar

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Tick:
    time: datetime
    price: Decimal


def monitor_ticks(state: StopState, bar: Bar, exits: ExitSettings) -> tuple[BarExit, list[Tick]]:
    """The bar rule's verdict for one open position over one bar, and the ticks that make the monitor reach it."""
    start, end = bar.open_time, bar.open_time + HOUR
    verdict = update_stop_bar(state, bar.open, bar.high, bar.low, bar.close, exits, end)
    ticks: list[Tick] = []
    hold_due_at_start = exits.max_hold_hours > 0 and start - state.entry_time >= timedelta(hours=exits.max_hold_hours)
    if verdict.state.hwm > state.hwm and not hold_due_at_start:
        ticks.append(Tick(start, verdict.state.hwm))
    if verdict.reason is not None:
        ticks.append(Tick(end, verdict.price if verdict.price is not None else bar.close))
    return verdict, ticks
