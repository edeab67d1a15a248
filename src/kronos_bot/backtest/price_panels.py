"""What each symbol's price panel shows: the price at every boundary and where the trades went in and out.

Plain data taken from a finished run (pure), so the markers can be checked without drawing them: an entry
marker sits at the fill (entry time, entry price), an exit marker at the exit fill, and a position still
open at the end gets an entry marker only (it is counted as open in the caption).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kronos_bot.backtest.runner import BacktestRun


@dataclass(frozen=True)
class Marker:
    time: datetime
    price: float
    win: bool | None = None  # exits: P&L > 0 after fees; None for entries


@dataclass
class PricePanel:
    symbol: str
    times: list[datetime] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)
    entries: list[Marker] = field(default_factory=list)
    exits: list[Marker] = field(default_factory=list)
    open_at_end: int = 0

    def caption(self) -> str:
        return f"{self.symbol}: {len(self.entries)} entries, {len(self.exits)} exits, {self.open_at_end} open at end"


def price_panels(run: BacktestRun) -> list[PricePanel]:
    """One panel per symbol of the run, in the run's symbol order; prices are `run.marks` (the price an
    entry at that boundary fills at, before slippage), hours without a price left out."""
    times = list(run.period.boundaries())
    panels = {s: PricePanel(s) for s in run.settings.symbols}
    for symbol, marks in run.marks.items():
        panel = panels.setdefault(symbol, PricePanel(symbol))
        for t, mark in zip(times, marks, strict=True):
            if mark is not None:
                panel.times.append(t)
                panel.prices.append(float(mark))
    for p in run.positions:
        panel = panels.setdefault(p.symbol, PricePanel(p.symbol))
        panel.entries.append(Marker(p.entry_time, float(p.entry_price)))
        if p.is_open:
            panel.open_at_end += 1
        elif p.exit_time is not None and p.exit_price is not None:
            panel.exits.append(Marker(p.exit_time, float(p.exit_price), win=(p.pnl or 0) > 0))
    return list(panels.values())
