"""Numbers as a reader wants them in a report: rounded for reading, never for computing.

The files (summary.json, trades.csv) keep full precision; only what a person reads on the page is
rounded here, so one set of rules serves the backtest page, the evaluation page and the end-of-run table.
Prices get 2 decimals from $1 up and 6 significant digits below (a DOGE at 0.321457, a BTC at 97,546.96).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from kronos_bot.reading import price_text as reading_price_text

NA = "n/a"
Number = Decimal | float | int


def price_text(value: Number | None) -> str:
    """The one reading rule for prices (kronos_bot.reading)."""
    return reading_price_text(value)


def money_text(value: Number | None, *, signed: bool = False) -> str:
    """USD to the cent; `signed` for P&L (+1.23 / -4.56)."""
    if value is None:
        return NA
    return f"{float(value):+,.2f}" if signed else f"{float(value):,.2f}"


def percent_text(fraction: float | None, *, signed: bool = True, digits: int = 2) -> str:
    """A fraction as percent: 0.0123 -> "+1.23 %"."""
    if fraction is None:
        return NA
    return f"{100 * fraction:{'+' if signed else ''}.{digits}f} %"


def share_text(fraction: float | None) -> str:
    """A share of a count as percent with one decimal, unsigned: 0.5 -> "50.0 %"."""
    return percent_text(fraction, signed=False, digits=1)


def number_text(value: Number | None, pattern: str = "{:.4f}") -> str:
    return NA if value is None else pattern.format(float(value))


def time_text(value: datetime | str | None) -> str:
    """Minutes are enough for hourly bars: "2024-12-14 03:00" (UTC, as every time in a backtest)."""
    if value is None or value == "":
        return "-"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.strftime("%Y-%m-%d %H:%M")
