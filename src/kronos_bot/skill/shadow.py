"""Shadow outcomes: what an entry at a decision's next bar open would have done under the configured
exits, computed from bars afterwards -- never an order. Pure.

Why: a gate's worth is what its vetoes saved or cost. Every decision, ENTER or SKIP, gets the outcome of
the entry it did or did not make: entry at the open of the bar after the decision (plus slippage, the fee
taken in the coin), then the backtest's conservative bar rule (`stops.update_stop_bar`: the low checked
against the stop as it stood before the bar, only then the high raising it), exit at the stop or the
close (minus slippage and the fee). A shadow still open after `max_hours` is valued at that bar's
close (`exit_reason` `open`). Grouped by the decisions' blocking reasons, the mean shadow return says
whether each veto kept the bot out of losers or out of winners.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from kronos_bot.config import ExitSettings
from kronos_bot.trader.stops import initial_state, update_stop_bar

HOUR = timedelta(hours=1)
ONE = Decimal(1)
OPEN = "open"


@dataclass(frozen=True)
class Bar:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


class BarLike(Protocol):
    """An hourly bar as the live cycle (`Bar`) and the backtest's store (`backtest.data.Bar`) give it."""

    @property
    def open_time(self) -> datetime: ...
    @property
    def open(self) -> Decimal: ...
    @property
    def high(self) -> Decimal: ...
    @property
    def low(self) -> Decimal: ...
    @property
    def close(self) -> Decimal: ...


@dataclass(frozen=True)
class Shadow:
    """The outcome of one shadow entry; `done` False while later bars are still needed."""

    done: bool
    entry_price: Decimal | None = None
    exit_price: Decimal | None = None
    exit_time: datetime | None = None
    exit_reason: str | None = None
    return_pct: float | None = None  # after both fees and slippage


def shadow_entry(
    entry_bar: datetime,
    bar_at: Callable[[datetime], BarLike | None],
    exits: ExitSettings,
    *,
    fee_rate: Decimal,
    slippage: Decimal,
    max_hours: int,
) -> Shadow:
    """The shadow of an entry at the open of the bar opening at `entry_bar` (see the module doc).

    `bar_at(open_time)`: the hourly bar opening then, None when it is not known (yet); a missing hour ends
    the walk (not done yet). Bars are asked for one by one, so a shadow that exits early costs little.
    """
    first = bar_at(entry_bar)
    if first is None:
        return Shadow(done=False)
    entry = first.open * (ONE + slippage)
    state = initial_state(entry, entry_bar, exits)
    last = first
    for i in range(max(1, max_hours)):
        bar = bar_at(entry_bar + i * HOUR)
        if bar is None:
            return Shadow(done=False, entry_price=entry)
        verdict = update_stop_bar(state, bar.open, bar.high, bar.low, bar.close, exits, bar.open_time + HOUR)
        if verdict.reason is not None:
            price = verdict.price if verdict.price is not None else bar.close
            return _closed(entry, price, bar.open_time + HOUR, verdict.reason.value, fee_rate, slippage)
        state = verdict.state
        last = bar
    return _closed(entry, last.close, last.open_time + HOUR, OPEN, fee_rate, slippage)


def _closed(entry: Decimal, price: Decimal, when: datetime, reason: str, fee: Decimal, slippage: Decimal) -> Shadow:
    sold = price * (ONE - slippage)
    ratio = (ONE - fee) * (ONE - fee) * sold / entry
    return Shadow(True, entry, sold, when, reason, float((ratio - ONE) * 100))


def attribution(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per blocking reason (and per ENTER tier): count, mean shadow return %, win rate.

    `rows`: decisions with `action`, `tier`, `reasons` and the `return_pct` of their shadow. A decision
    blocked for several reasons counts under each of them.
    """
    groups: dict[str, list[float]] = {}
    for row in rows:
        value = row.get("return_pct")
        if value is None:
            continue
        if row.get("action") == "ENTER":
            keys = [f"ENTER:{row.get('tier')}"]
        else:
            keys = list(row.get("reasons") or []) or ["(no reason)"]
        for key in keys:
            groups.setdefault(key, []).append(float(value))
    return {
        key: {
            "count": len(values),
            "mean_return_pct": sum(values) / len(values),
            "win_rate": sum(1 for v in values if v > 0) / len(values),
        }
        for key, values in sorted(groups.items())
    }
