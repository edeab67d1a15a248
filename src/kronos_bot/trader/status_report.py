"""`kronos-bot status` as data and as text: pure functions of what the journal and the probes found.

The JSON form keeps every amount at full precision as a string; the text form rounds for reading
(money to cents, prices to the asset's price increment when the broker said it, else a precision that
suits the price). A question that could not be answered says why in its own place ("down: ..."), so
the rest of the report is still there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from kronos_bot.broker.base import Account
from kronos_bot.reading import price_text
from kronos_bot.trader.records import PositionRecord

CENT = Decimal("0.01")
# The text report shows this much of a reason (an error body can hold a traceback); --json has all of it.
REASON_CHARS = 160


@dataclass(frozen=True)
class PnlFacts:
    today: Decimal
    week: Decimal
    all_time: Decimal
    closed_trades: int
    wins: int


@dataclass
class StatusFacts:
    """Everything `status` learned; each probe that failed leaves its answer None and a reason in `down`."""

    now: datetime
    mode: str
    broker: str
    trader: dict[str, Any]
    positions: Sequence[PositionRecord]
    pnl: PnlFacts
    account: Account | None = None
    account_source: str | None = None  # "broker" or "last reading at ..."
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    increments: Mapping[str, Decimal] = field(default_factory=dict)
    last_cycle: dict[str, Any] | None = None
    next_cycle: datetime | None = None
    forecaster: dict[str, Any] = field(default_factory=dict)
    skill: dict[str, Any] = field(default_factory=dict)
    degraded: dict[str, Any] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)


def pnl_facts(closed: Sequence[PositionRecord], now: datetime) -> PnlFacts:
    """Realized P&L today (UTC day), over the last 7 days and all time, from closed positions."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week_start = now - timedelta(days=7)
    done = [p for p in closed if p.pnl is not None and p.exit_time is not None]

    def total(since: datetime | None) -> Decimal:
        return sum(
            (p.pnl for p in done if p.pnl is not None and (since is None or (p.exit_time and p.exit_time >= since))),
            Decimal(0),
        )

    return PnlFacts(
        today=total(day_start),
        week=total(week_start),
        all_time=total(None),
        closed_trades=len(done),
        wins=sum(1 for p in done if p.pnl is not None and p.pnl > 0),
    )


def position_row(p: PositionRecord, price: Decimal | None, now: datetime) -> dict[str, Any]:
    unrealized = (price - p.entry_price) * p.qty if price is not None else None
    pct = (price / p.entry_price - 1) * 100 if price is not None and p.entry_price else None
    return {
        "symbol": p.symbol,
        "tier": p.tier,
        "entry_time": p.entry_time.isoformat(),
        "entry_price": str(p.entry_price),
        "qty": str(p.qty),
        "cost": str(p.entry_cost),
        "hwm": str(p.hwm),
        "stop": str(p.stop_price) if p.stop_price is not None else None,
        "trail_armed": p.trail_armed,
        "price": str(price) if price is not None else None,
        "unrealized_pnl": str(unrealized) if unrealized is not None else None,
        "unrealized_pct": str(pct) if pct is not None else None,
        "backstop_order_id": p.backstop_order_id,
        "backstop_stop": str(p.backstop_stop) if p.backstop_stop is not None else None,
        "age_hours": round((now - p.entry_time).total_seconds() / 3600, 2),
    }


def status_document(facts: StatusFacts) -> dict[str, Any]:
    """The `--json` form (money and prices as strings, full precision)."""
    account = facts.account
    pnl = facts.pnl
    return {
        "now": facts.now.isoformat(),
        "mode": facts.mode,
        "broker": facts.broker,
        "trader": facts.trader,
        "account": (
            {
                "equity": str(account.equity),
                "cash": str(account.cash),
                "buying_power": str(account.buying_power),
                "currency": account.currency,
                "source": facts.account_source,
            }
            if account is not None
            else None
        ),
        "pnl": {
            "today": str(pnl.today),
            "last_7_days": str(pnl.week),
            "all_time": str(pnl.all_time),
            "closed_trades": pnl.closed_trades,
            "wins": pnl.wins,
            "win_rate": (pnl.wins / pnl.closed_trades) if pnl.closed_trades else None,
        },
        "positions": [position_row(p, facts.prices.get(p.symbol), facts.now) for p in facts.positions],
        "last_cycle": facts.last_cycle,
        "next_cycle": facts.next_cycle.isoformat() if facts.next_cycle else None,
        "forecaster": facts.forecaster,
        "skill": facts.skill,
        "degraded": facts.degraded,
        "down": facts.down,
    }


# ----- text -----


def money(value: Decimal | str | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    amount = Decimal(value).quantize(CENT, ROUND_HALF_EVEN)
    sign = ("+" if amount > 0 else "-" if amount < 0 else "") if signed else ("-" if amount < 0 else "")
    return f"{sign}${abs(amount):,.2f}"


def percent_text(value: Decimal | str) -> str:
    """A signed percentage to 2 decimals; one that rounds to zero has no sign (never "-0.00 %")."""
    pct = Decimal(value).quantize(CENT, ROUND_HALF_EVEN)
    return "0.00 %" if pct == 0 else f"{pct:+.2f} %"


def _short(reason: object, limit: int = REASON_CHARS) -> str:
    """One line of a reason (a broker's error body can carry a whole traceback); `--json` keeps it whole."""
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(iso: str | None) -> str:
    if not iso:
        return "n/a"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_lines(doc: Mapping[str, Any], increments: Mapping[str, Decimal] | None = None) -> list[str]:
    """The readable report of a `status_document`."""
    increments = increments or {}
    lines = [f"mode: {doc['mode']} (broker: {doc['broker']})   trader: {_trader_text(doc['trader'])}"]
    account = doc["account"]
    if account is not None:
        lines.append(
            f"account: equity {money(account['equity'])}   cash {money(account['cash'])}   "
            f"buying power {money(account['buying_power'])}   ({account['source']})"
        )
    else:
        lines.append(f"account: unavailable: {_short(doc['down'].get('account', 'not read'))}")
    pnl = doc["pnl"]
    win = f"{pnl['win_rate']:.1%}" if pnl["win_rate"] is not None else "n/a"
    lines.append(
        f"realized P&L: today {money(pnl['today'], True)}   7 days {money(pnl['last_7_days'], True)}   "
        f"all time {money(pnl['all_time'], True)}   closed trades {pnl['closed_trades']}, win rate {win}"
    )
    lines.append(f"last cycle: {_cycle_text(doc['last_cycle'])}   next cycle: {_when(doc['next_cycle'])}")
    lines.append(f"forecaster: {_forecaster_text(doc['forecaster'])}")
    degraded = doc["degraded"]
    if degraded:
        for name, state in degraded.items():
            lines.append(f"degraded: {name} since {_when(state.get('since'))}: {_short(state.get('reason'))}")
    else:
        lines.append("degraded: none")
    for part, why in doc["down"].items():
        lines.append(f"down: {part}: {_short(why)}")
    skill = doc["skill"]
    flag = "  [kronos_no_skill: Brier skill below 0 at 95 %]" if skill.get("guard") == "no_skill" else ""
    lines.append(f"forecast skill: {skill.get('line', 'n/a')}{flag}")
    rows = doc["positions"]
    if not rows:
        lines.append("open positions: none")
        return lines
    lines.append("open positions:")
    lines.append(
        f"  {'symbol':9} {'tier':16} {'entry':>12} {'price':>12} {'unrealized':>20} {'hwm':>12} {'stop':>12} "
        f"{'backstop':>12} {'age':>7}"
    )
    for r in rows:
        inc = increments.get(r["symbol"])
        unreal = (
            f"{percent_text(r['unrealized_pct'])} ({money(r['unrealized_pnl'], True)})"
            if r["unrealized_pct"] is not None
            else "n/a"
        )
        backstop = price_text(r["backstop_stop"], inc) if r["backstop_order_id"] else "none"
        lines.append(
            f"  {r['symbol']:9} {r['tier']!s:16} {price_text(r['entry_price'], inc):>12} "
            f"{price_text(r['price'], inc):>12} {unreal:>20} {price_text(r['hwm'], inc):>12} "
            f"{price_text(r['stop'], inc):>12} {backstop:>12} {r['age_hours']:>6.1f}h"
        )
        if r["backstop_order_id"]:
            lines.append(f"  {'':9} backstop order {r['backstop_order_id']}")
    return lines


def _trader_text(trader: Mapping[str, Any]) -> str:
    state = trader.get("state", "unknown")
    if state == "running":
        return f"running (pid {trader.get('pid')}, since {_when(trader.get('started_at'))})"
    if state == "stopped":
        return f"stopped at {_when(trader.get('stopped_at'))} ({trader.get('stop_reason', 'shutdown')})"
    if state == "gone":
        seen = _when(trader.get("updated_at"))
        return f"not running: pid {trader.get('pid')} is gone (crashed or killed; last seen {seen})"
    return str(state)


def _cycle_text(cycle: Mapping[str, Any] | None) -> str:
    if not cycle:
        return "none yet"
    actions = cycle.get("decisions") or {}
    counts = ", ".join(f"{n} {a}" for a, n in sorted(actions.items())) or "no decisions"
    seconds = cycle.get("duration_seconds")
    took = f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "running"
    return f"{_when(cycle.get('started_at'))}, {took}, {cycle.get('status')}: {counts}"


def _forecaster_text(forecaster: Mapping[str, Any]) -> str:
    state = forecaster.get("state", "unknown")
    parts = [str(state)]
    if forecaster.get("endpoint"):
        parts.append(str(forecaster["endpoint"]))
    if forecaster.get("model"):
        parts.append(f"model {forecaster['model']}")
    if forecaster.get("error"):
        parts.append(_short(forecaster["error"]))
    if forecaster.get("detail"):
        parts.append(_short(forecaster["detail"]))
    return ", ".join(parts)
