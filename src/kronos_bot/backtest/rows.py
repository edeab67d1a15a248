"""The rows of a backtest's CSV files (decisions.csv, trades.csv), as plain data (pure).

Decision rows take their numbers from `cycle.decision_event`, the function that builds the live
`decision` log line, so a row of decisions.csv reads like a line of `journalctl -f`. The runner builds
decision rows as it replays; the report writes both files and the summary.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from kronos_bot.domain import Decision, GateResults
from kronos_bot.trader.cycle import decision_event
from kronos_bot.trader.records import PositionRecord

DECISION_COLUMNS = (
    "time",
    "symbol",
    "rsi",
    "ema_fast",
    "ema_slow",
    "macd",
    "macd_hist",
    "technical",
    "sentiment",
    "kronos_signal",
    "kronos_confidence",
    "p_up",
    "action",
    "tier",
    "notional",
    "reasons",
)
TRADE_COLUMNS = (
    "symbol",
    "tier",
    "entry_time",
    "entry_price",
    "qty",
    "notional",
    "exit_time",
    "exit_price",
    "exit_reason",
    "hwm",
    "fees",
    "pnl",
)
CENT = Decimal("0.01")
OPEN = "open"  # exit_reason of a position still open at the end (valued at the last price, no exit fee)


def decision_row(time: datetime, decision: Decision, gates: GateResults | None) -> dict[str, Any]:
    """One decisions.csv row (the live decision event, flattened)."""
    event = decision_event(decision, gates)
    tech, sent, kron = event["technical"] or {}, event["sentiment"] or {}, event["kronos"] or {}
    return {
        "time": time.isoformat(),
        "symbol": decision.symbol,
        "rsi": tech.get("rsi"),
        "ema_fast": tech.get("ema_fast"),
        "ema_slow": tech.get("ema_slow"),
        "macd": tech.get("macd"),
        "macd_hist": tech.get("macd_hist"),
        "technical": tech.get("verdict"),
        "sentiment": sent.get("verdict"),
        "kronos_signal": kron.get("signal"),
        "kronos_confidence": kron.get("confidence"),
        "p_up": kron.get("p_up"),
        "action": event["action"],
        "tier": event["tier"],
        "notional": event["notional"],
        "reasons": ";".join(event["reasons"]),
    }


def position_fees(p: PositionRecord) -> Decimal:
    """USD value of both fees: the entry fee (taken in the coin) at the entry price, plus the exit fee."""
    return p.entry_fee * p.entry_price + (p.exit_fee or Decimal(0))


def trade_row(p: PositionRecord, end_mark: Decimal | None) -> dict[str, Any]:
    """One trades.csv row; a position still open is valued at `end_mark` with exit_reason `open`."""
    reason: str | None
    if p.is_open:
        pnl = p.qty * end_mark - p.entry_cost if end_mark is not None else None
        exit_time, exit_price, reason = None, end_mark, OPEN
    else:
        pnl, exit_time, exit_price, reason = p.pnl, p.exit_time, p.exit_price, p.exit_reason
    return {
        "symbol": p.symbol,
        "tier": p.tier,
        "entry_time": p.entry_time.isoformat(),
        "entry_price": p.entry_price,
        "qty": p.qty,
        "notional": p.entry_cost.quantize(CENT),
        "exit_time": exit_time.isoformat() if exit_time else None,
        "exit_price": exit_price,
        "exit_reason": reason,
        "hwm": p.hwm,
        "fees": position_fees(p).quantize(Decimal("0.0001")),
        "pnl": pnl.quantize(Decimal("0.0001")) if pnl is not None else None,
    }
