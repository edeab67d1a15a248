"""Realized P&L of closed positions, grouped like Freqtrade's /profit and /performance (`kronos-bot profit`).

Pure functions over journal records, so the numbers can be checked by hand and shared by any front end
(the command's table and JSON; a notifier later). Money stays Decimal at full precision here; only the
text rendering rounds to cents, so the JSON and the journal add up to the last digit.

What "fees" means: the USD value of every fee the position paid, entry and exit. The exit fee is journaled
in USD; the entry fee is taken by the broker in the coin (filled qty - qty received), so it is valued at
the entry price (entry_fee * entry_price: its worth when it was paid). Fees are information, not a cost
to subtract again: P&L = proceeds (USD received, after the exit fee) - entry cost (USD spent for the whole
filled qty), so both fees are already inside P&L (the entry fee as the coins that were never there to
sell; P&L charges them at the exit price, which differs from this valuation by the move on the fee alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from kronos_bot.trader.records import PositionRecord

ZERO = Decimal(0)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
GROUP_KEYS = ("symbol", "tier", "reason", "day")
TOTAL_KEY = "TOTAL"
# A tier or reason the journal left empty (an adopted `external` position has no tier).
NONE_LABEL = "-"


@dataclass(frozen=True)
class ProfitRow:
    """One group's realized results (or the total). A trade with P&L exactly 0 is neither a win nor a loss."""

    key: str
    trades: int
    wins: int
    losses: int
    pnl: Decimal  # USD, sum of the positions' P&L (after all fees)
    cost: Decimal  # USD, sum of entry costs
    fees: Decimal  # USD, exit fees + entry fees valued at the entry price (already inside pnl)
    mean_return_pct: Decimal  # mean of the per-trade returns: each trade weighs the same
    best_pct: Decimal
    worst_pct: Decimal
    mean_hold_hours: float | None  # None when no trade of the group has an exit time

    @property
    def draws(self) -> int:
        return self.trades - self.wins - self.losses

    @property
    def win_rate_pct(self) -> Decimal:
        return Decimal(self.wins) / Decimal(self.trades) * HUNDRED if self.trades else ZERO

    @property
    def return_on_cost_pct(self) -> Decimal | None:
        """The money-weighted return: a big losing position outweighs several small winners, unlike the mean."""
        return self.pnl / self.cost * HUNDRED if self.cost else None


@dataclass(frozen=True)
class ProfitReport:
    by: str
    rows: tuple[ProfitRow, ...]
    total: ProfitRow | None  # None when no position had a P&L
    skipped: int  # positions without a P&L (open, or a journal row never completed): not in any row


def fees_usd(position: PositionRecord) -> Decimal:
    """Both fees in USD; the entry fee (coin) at the entry price, the price at which it was paid."""
    return (position.exit_fee or ZERO) + position.entry_fee * position.entry_price


def return_pct(position: PositionRecord) -> Decimal:
    """The journaled P&L % (rounded to 4 places at close), recomputed only if the row lacks it."""
    if position.pnl_percent is not None:
        return position.pnl_percent
    if position.pnl is None or not position.entry_cost:
        return ZERO
    return position.pnl / position.entry_cost * HUNDRED


def hold_hours(position: PositionRecord) -> float | None:
    if position.exit_time is None:
        return None
    return (position.exit_time - position.entry_time).total_seconds() / 3600


def group_key(position: PositionRecord, by: str) -> str:
    """The label a position is grouped under; `day` is the UTC date of the exit (the daily loss limit's day)."""
    if by == "symbol":
        return position.symbol
    if by == "tier":
        return position.tier or NONE_LABEL
    if by == "reason":
        return position.exit_reason or NONE_LABEL
    if by == "day":
        return _utc_day(position.exit_time)
    raise ValueError(f"cannot group by {by!r}: one of {', '.join(GROUP_KEYS)}")


def _utc_day(when: datetime | None) -> str:
    if when is None:
        return NONE_LABEL
    return when.astimezone(UTC).date().isoformat()


def summarize_group(key: str, positions: Sequence[PositionRecord]) -> ProfitRow:
    """One row from positions that all have a P&L (callers filter: see `profit_report`)."""
    if not positions:
        raise ValueError("a profit row needs at least one trade")
    pnls = [p.pnl or ZERO for p in positions]
    returns = [return_pct(p) for p in positions]
    hours = [h for h in (hold_hours(p) for p in positions) if h is not None]
    return ProfitRow(
        key=key,
        trades=len(positions),
        wins=sum(1 for x in pnls if x > 0),
        losses=sum(1 for x in pnls if x < 0),
        pnl=sum(pnls, ZERO),
        cost=sum((p.entry_cost for p in positions), ZERO),
        fees=sum((fees_usd(p) for p in positions), ZERO),
        mean_return_pct=sum(returns, ZERO) / len(returns),
        best_pct=max(returns),
        worst_pct=min(returns),
        mean_hold_hours=sum(hours) / len(hours) if hours else None,
    )


def profit_report(positions: Iterable[PositionRecord], by: str = "symbol") -> ProfitReport:
    """Rows by `by`, best P&L first (by day: oldest first, to read as a history), and the total.

    A position without a P&L is counted in `skipped` and left out of every row, so the rows' sums are
    exactly the total's and a half-written journal row cannot turn into a fake break-even trade.
    """
    if by not in GROUP_KEYS:
        raise ValueError(f"cannot group by {by!r}: one of {', '.join(GROUP_KEYS)}")
    counted: list[PositionRecord] = []
    skipped = 0
    for p in positions:
        if p.pnl is None:
            skipped += 1
        else:
            counted.append(p)
    groups: dict[str, list[PositionRecord]] = {}
    for p in counted:
        groups.setdefault(group_key(p, by), []).append(p)
    rows = [summarize_group(key, members) for key, members in groups.items()]
    order: Callable[[ProfitRow], Any] = (lambda r: r.key) if by == "day" else (lambda r: (-r.pnl, r.key))
    rows.sort(key=order)
    total = summarize_group(TOTAL_KEY, counted) if counted else None
    return ProfitReport(by=by, rows=tuple(rows), total=total, skipped=skipped)


# ----- rendering (still pure: strings in, strings out) -----


def row_document(row: ProfitRow) -> dict[str, Any]:
    """JSON-ready at full precision: Decimals as strings (a float would lose cents on big sums)."""
    roc = row.return_on_cost_pct
    return {
        "key": row.key,
        "trades": row.trades,
        "wins": row.wins,
        "losses": row.losses,
        "draws": row.draws,
        "win_rate_pct": str(row.win_rate_pct),
        "pnl_usd": str(row.pnl),
        "cost_usd": str(row.cost),
        "mean_return_pct": str(row.mean_return_pct),
        "return_on_cost_pct": str(roc) if roc is not None else None,
        "fees_usd": str(row.fees),
        "best_pct": str(row.best_pct),
        "worst_pct": str(row.worst_pct),
        "mean_hold_hours": row.mean_hold_hours,
    }


def report_document(report: ProfitReport) -> dict[str, Any]:
    return {
        "by": report.by,
        "rows": [row_document(r) for r in report.rows],
        "total": row_document(report.total) if report.total is not None else None,
        "skipped": report.skipped,
    }


def _fixed(value: Decimal | None) -> str:
    """Two decimals, half up (cents as people round them), and never a "-0.00"."""
    if value is None:
        return "-"
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return str(rounded.copy_abs() if rounded == 0 else rounded)


_COLUMNS: tuple[tuple[str, Callable[[ProfitRow], str]], ...] = (
    ("trades", lambda r: str(r.trades)),
    ("wins", lambda r: str(r.wins)),
    ("losses", lambda r: str(r.losses)),
    ("win %", lambda r: _fixed(r.win_rate_pct)),
    ("P&L USD", lambda r: _fixed(r.pnl)),
    ("mean %", lambda r: _fixed(r.mean_return_pct)),
    ("on cost %", lambda r: _fixed(r.return_on_cost_pct)),
    ("fees USD", lambda r: _fixed(r.fees)),
    ("best %", lambda r: _fixed(r.best_pct)),
    ("worst %", lambda r: _fixed(r.worst_pct)),
    ("hold h", lambda r: f"{r.mean_hold_hours:.1f}" if r.mean_hold_hours is not None else "-"),
)


def table_lines(report: ProfitReport) -> list[str]:
    """The aligned table: a header, one line per group, a rule, the TOTAL line (nothing without a total)."""
    if report.total is None:
        return []
    rows = [*report.rows, report.total]
    cells = [[render(r) for _, render in _COLUMNS] for r in rows]
    key_width = max(len(report.by), *(len(r.key) for r in rows))
    widths = [max(len(name), *(len(c[i]) for c in cells)) for i, (name, _) in enumerate(_COLUMNS)]

    def line(key: str, values: Sequence[str]) -> str:
        return "  ".join([key.ljust(key_width), *(v.rjust(w) for v, w in zip(values, widths, strict=True))])

    header = line(report.by, [name for name, _ in _COLUMNS])
    out = [header]
    out += [line(r.key, c) for r, c in zip(report.rows, cells, strict=False)]
    out.append("-" * len(header))
    out.append(line(report.total.key, cells[-1]))
    return out
