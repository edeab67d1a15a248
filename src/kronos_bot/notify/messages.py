"""The texts of the notifications: pure functions of the trader's events, so they are tested without I/O.

A notification is read on a phone lock screen: the title says what happened and to which symbol, the body
a few short lines of facts. Money is in USD to the cent, prices to 2 decimals (6 significant digits below
1, where cents would hide the move), times in UTC like every log line, so a message and the log agree.
Each message carries its `event` (the name of its `notify.events` switch) and a level for `min_level`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from kronos_bot.config import NotifyLevel
from kronos_bot.reading import price_text
from kronos_bot.trader.events import DailySummary, DegradedChange, TraderStarted
from kronos_bot.trader.records import PositionRecord

# A close for one of these reasons is worth a look even when it made money: the bot's own stop was not
# the one that acted (the broker-side stop, or someone or something outside the bot).
ALARMING_EXIT_REASONS = frozenset({"stop_loss", "backstop", "external"})
# Open positions listed by name in the daily summary; the rest are counted.
SUMMARY_POSITIONS_SHOWN = 5
# How much of an outage reason a message carries (the journal and the logs keep all of it).
REASON_CHARS = 200
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Message:
    event: str  # position_opened | position_closed | degraded | trader_started | trader_stopped | daily_summary
    level: NotifyLevel
    title: str
    body: str


# ----- formatting -----


def usd(value: Decimal) -> str:
    """$1,234.56 (a loss as -$1,234.56)."""
    cents = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f}"


def signed_usd(value: Decimal) -> str:
    """P&L always shows its sign: +$3.21, -$0.50, $0.00."""
    cents = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    return ("+" if cents > 0 else "") + usd(cents)


def signed_percent(value: Decimal) -> str:
    rounded = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    return f"{'+' if rounded > 0 else ''}{rounded:.2f}%"


def price(value: Decimal) -> str:
    """The one reading rule for prices (kronos_bot.reading): 97,412.35, 0.0000123457."""
    return price_text(value)


def quantity(value: Decimal) -> str:
    """The coin quantity as the broker holds it, without trailing zeros or an exponent."""
    return f"{value.normalize():f}"


def utc_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    """45s, 12m, 3h 05m, 2d 4h: the two largest units are enough on a phone."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _reason(text: str, limit: int = REASON_CHARS) -> str:
    """An outage's reason on one line and short enough for a lock screen (an error body may hold a traceback)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _lines(*lines: str | None) -> str:
    return "\n".join(line for line in lines if line)


# ----- one function per event -----


def position_opened(position: PositionRecord) -> Message:
    tier = f" ({position.tier})" if position.tier else ""
    if position.stop_price is not None and position.entry_price:
        distance = (position.stop_price / position.entry_price - 1) * 100
        stop = f"stop {price(position.stop_price)} ({signed_percent(distance)})"
    else:
        stop = "stop: none yet"
    return Message(
        event="position_opened",
        level="info",
        title=f"kronos-bot: bought {position.symbol}",
        body=_lines(
            f"{position.symbol} bought{tier}",
            f"fill {price(position.entry_price)} x {quantity(position.qty)} = {usd(position.entry_cost)}",
            stop,
            utc_time(position.entry_time),
        ),
    )


def position_closed(position: PositionRecord) -> Message:
    reason = position.exit_reason or "unknown reason"
    pnl = position.pnl
    losing = pnl is not None and pnl < 0
    level: NotifyLevel = "warning" if losing or reason in ALARMING_EXIT_REASONS else "info"
    if pnl is not None:
        percent = f" ({signed_percent(position.pnl_percent)})" if position.pnl_percent is not None else ""
        result = f"{signed_usd(pnl)}{percent}"
    else:
        result = "P&L unknown"
    exit_price = price(position.exit_price) if position.exit_price is not None else "unknown"
    held = (
        f"held {duration((position.exit_time - position.entry_time).total_seconds())}"
        if position.exit_time is not None
        else None
    )
    return Message(
        event="position_closed",
        level=level,
        title=f"kronos-bot: sold {position.symbol} {result}",
        body=_lines(
            f"{position.symbol} closed: {reason}",
            f"exit {exit_price} (entry {price(position.entry_price)})",
            f"P&L {result}",
            held,
            utc_time(position.exit_time) if position.exit_time is not None else None,
        ),
    )


def degraded(change: DegradedChange) -> Message:
    if change.active:
        return Message(
            event="degraded",
            level="warning",
            title=f"kronos-bot: {change.component} degraded",
            body=_lines(f"{change.component} is down: {_reason(change.reason)}", f"since {utc_time(change.since)}"),
        )
    seconds = change.seconds if change.seconds is not None else (change.at - change.since).total_seconds()
    return Message(
        event="degraded",
        level="info",
        title=f"kronos-bot: {change.component} back",
        body=_lines(
            f"{change.component} is back after {duration(seconds)}",
            f"it was: {_reason(change.reason)}",
            utc_time(change.at),
        ),
    )


def trader_started(event: TraderStarted) -> Message:
    positions = f"{event.open_positions} open position{'' if event.open_positions == 1 else 's'}"
    return Message(
        event="trader_started",
        level="info",
        title=f"kronos-bot started ({event.mode})",
        body=_lines(
            f"mode {event.mode}, broker {event.broker}",
            f"symbols {', '.join(event.symbols)}",
            positions,
            f"degraded: {', '.join(event.degraded)}" if event.degraded else None,
        ),
    )


def trader_stopped(reason: str, open_positions: int) -> Message:
    if open_positions:
        noun = "position" if open_positions == 1 else "positions"
        left = f"{open_positions} open {noun}, protected by broker-side stops"
    else:
        left = "no open positions"
    return Message(
        event="trader_stopped",
        level="warning" if open_positions else "info",
        title="kronos-bot stopped",
        body=_lines(f"stopped: {reason}", left),
    )


def daily_summary(summary: DailySummary) -> Message:
    if summary.trades:
        rate = f"{summary.wins / summary.trades:.0%}"
        noun = "trade" if summary.trades == 1 else "trades"
        trades = f"{summary.trades} {noun}, {summary.wins} won ({rate})"
    else:
        trades = "no trades closed"
    return Message(
        event="daily_summary",
        level="info",
        title=f"kronos-bot daily {summary.day}: {signed_usd(summary.realized_pnl)}",
        body=_lines(
            f"realized {signed_usd(summary.realized_pnl)}, {trades}",
            f"equity {usd(summary.equity)}" if summary.equity is not None else None,
            _open_positions(summary.open_positions),
            f"forecast skill: {summary.skill_line}" if summary.skill_line else None,
        ),
    )


def _open_positions(positions: Sequence[PositionRecord]) -> str:
    if not positions:
        return "no open positions"
    shown = [
        f"  {p.symbol} {quantity(p.qty)} @ {price(p.entry_price)}"
        + (f", stop {price(p.stop_price)}" if p.stop_price is not None else "")
        for p in positions[:SUMMARY_POSITIONS_SHOWN]
    ]
    more = len(positions) - SUMMARY_POSITIONS_SHOWN
    return _lines(f"open ({len(positions)}):", *shown, f"  and {more} more" if more > 0 else None)


def notify_test_message() -> Message:
    """What `kronos-bot notify-test` sends: proves the URL works without waiting for a trade."""
    return Message(
        event="test",
        level="info",
        title="kronos-bot: test notification",
        body=f"If you read this, kronos-bot can reach you here.\n{utc_time(datetime.now(UTC))}",
    )
