"""The tables of the backtest page (pure): overview, benchmarks, P&L per symbol and tier, trades, entries.

The numbers come from where the rest of the backtest takes them: summary.json (`summary.build_summary`),
the rows of trades.csv (`rows.trade_row`), the equity statistics of `metrics`, and for the per-symbol and
per-tier tables the realized-P&L grouping of `kronos-bot profit` (`trader.profit.profit_report`), whose
win rate (P&L > 0 after fees) and P&L (closed positions) are the summary's. Only the rounding is new.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kronos_bot.backtest import metrics
from kronos_bot.backtest.benchmark import exposure_matched
from kronos_bot.backtest.formatting import (
    NA,
    money_text,
    number_text,
    percent_text,
    price_text,
    share_text,
    time_text,
)
from kronos_bot.backtest.rows import trade_row
from kronos_bot.backtest.tables import HIGHER, Table, better, cell, pairs_table, signed_pct_points
from kronos_bot.trader.profit import HUNDRED, group_key, profit_report, return_pct
from kronos_bot.trader.records import PositionRecord


@dataclass(frozen=True)
class Curve:
    """One line of the strategy-vs-benchmarks comparison."""

    name: str
    values: list[float]

    @property
    def period_return(self) -> float | None:
        return metrics.period_return(self.values)

    @property
    def max_drawdown(self) -> float:
        return metrics.max_drawdown(self.values)

    @property
    def sharpe(self) -> float | None:
        return metrics.sharpe(metrics.simple_returns(self.values))


def average_exposure(summary: Mapping[str, Any]) -> float:
    return float(summary["exposure"]["avg_invested_fraction"] or 0.0)


def comparison_curves(
    equity: Sequence[float], benchmark: Sequence[float], summary: Mapping[str, Any]
) -> tuple[Curve, Curve, Curve]:
    """(strategy, buy & hold at the strategy's average exposure, plain equal-weight buy & hold)."""
    fraction = average_exposure(summary)
    return (
        Curve("strategy", list(equity)),
        Curve(
            f"buy & hold at the strategy's exposure ({share_text(fraction)} invested)",
            exposure_matched(benchmark, fraction),
        ),
        Curve("buy & hold, equal weight, fully invested", list(benchmark)),
    )


def overview_table(summary: Mapping[str, Any], matched: Curve) -> Table:
    t = summary["trades"]
    period = summary["period"]
    dd = summary["max_drawdown"]
    return pairs_table(
        [
            ("period", f"{time_text(period['from'])} to {time_text(period['to'])} UTC ({period['hours']} h)"),
            ("symbols", ", ".join(summary["symbols"])),
            (
                "starting cash / final equity",
                f"{money_text(_number(summary['starting_cash']))} / {money_text(_number(summary['final_equity']))} USD",
            ),
            ("period return", percent_text(summary["period_return"])),
            ("exposure-matched buy & hold return", percent_text(matched.period_return)),
            (
                "realized P&L (closed trades, after fees)",
                f"{money_text(_number(summary['realized_pnl_usd']), signed=True)} USD",
            ),
            ("fees (both legs, already inside P&L)", f"{money_text(_number(summary['fees_usd']))} USD"),
            ("exposure (average fraction of equity invested)", percent_text(average_exposure(summary), signed=False)),
            ("time in market (hours with a position)", share_text(summary["exposure"]["time_in_market"])),
            ("win rate (closed trades with P&L > 0)", share_text(t["win_rate"])),
            ("trades (closed / open at end)", f"{t['total']} ({t['closed']} / {t['open_at_end']})"),
            ("average hold", NA if t["avg_hold_hours"] is None else f"{t['avg_hold_hours']:.1f} h"),
            ("max drawdown", percent_text(-dd if dd is not None else None)),
            ("Sharpe (hourly, annualized)", number_text(summary["sharpe_annualized"], "{:.2f}")),
            ("sentiment", summary["sentiment"]),
            ("costs", f"fee {summary['costs']['fee_percent']} %, slippage {summary['costs']['slippage_bps']} bps"),
            ("forecasts", ", ".join(f"{k}: {v}" for k, v in summary["kronos"]["forecasts"].items()) or "none"),
            ("config fingerprint", summary["config_fingerprint"]),
        ]
    )


def benchmark_table(curves: Sequence[Curve], summary: Mapping[str, Any]) -> Table:
    """The strategy against both buy & holds, then each symbol's own buy & hold (price return)."""
    columns = ("", better("return", HIGHER), "max drawdown", "Sharpe (hourly, annualized)")
    rows = [
        (c.name, percent_text(c.period_return), percent_text(-c.max_drawdown), number_text(c.sharpe, "{:.2f}"))
        for c in curves
    ]
    rows += [
        (f"buy & hold {symbol} alone", percent_text(ret), "", "")
        for symbol, ret in summary["buy_and_hold"]["per_symbol"].items()
    ]
    return Table(columns, rows)


GROUP_COLUMNS = (
    "closed trades",
    "open at end",
    better("win rate", HIGHER),
    better("realized P&L USD", HIGHER),
    better("mean return per trade", HIGHER),
    "fees USD",
)


def group_table(positions: Sequence[PositionRecord], by: str) -> Table:
    """Closed trades per symbol or tier (realized, after fees), best P&L first, and the total."""
    report = profit_report(positions, by=by)
    still_open = Counter(group_key(p, by) for p in positions if p.is_open)
    rows = [
        (
            r.key,
            str(r.trades),
            str(still_open.pop(r.key, 0)),
            share_text(r.wins / r.trades),
            money_text(r.pnl, signed=True),
            signed_pct_points(float(r.mean_return_pct)),
            money_text(r.fees),
        )
        for r in report.rows
    ]
    rows += [(key, "0", str(count), NA, NA, NA, NA) for key, count in sorted(still_open.items())]
    total = report.total
    if total is not None:
        open_count = sum(1 for p in positions if p.is_open)
        rows.append(
            (
                "all",
                str(total.trades),
                str(open_count),
                share_text(total.wins / total.trades),
                money_text(total.pnl, signed=True),
                signed_pct_points(float(total.mean_return_pct)),
                money_text(total.fees),
            )
        )
    return Table((by, *GROUP_COLUMNS), rows)


TRADE_TABLE_COLUMNS = (
    "symbol",
    "tier",
    "entry (UTC)",
    "entry price",
    "qty",
    "cost USD",
    "exit (UTC)",
    "exit price",
    "exit reason",
    "fees USD",
    "P&L USD",
    "return",
)


def trade_table(positions: Sequence[PositionRecord], end_marks: Mapping[str, Decimal | None]) -> Table:
    """trades.csv rounded for reading: prices 2 decimals from $1 up and 6 significant digits below, money
    to the cent, times to the minute; a position open at the end is valued at the last price."""
    rows = []
    for p in positions:
        r = trade_row(p, end_marks.get(p.symbol))
        pnl = r["pnl"]
        if p.is_open:
            ret = float(pnl / p.entry_cost * HUNDRED) if pnl is not None and p.entry_cost else None
        else:
            ret = float(return_pct(p))
        rows.append(
            (
                p.symbol,
                cell(r["tier"]),
                time_text(r["entry_time"]),
                price_text(r["entry_price"]),
                price_text(r["qty"]),
                money_text(r["notional"]),
                time_text(r["exit_time"]),
                price_text(r["exit_price"]),
                cell(r["exit_reason"]),
                money_text(r["fees"]),
                money_text(pnl, signed=True),
                signed_pct_points(ret),
            )
        )
    return Table(
        TRADE_TABLE_COLUMNS,
        rows,
        text_columns=frozenset({"tier", "entry (UTC)", "exit (UTC)", "exit reason"}),
        scroll=True,
    )


ENTRY_COLUMNS = (
    "time (UTC)",
    "symbol",
    "tier",
    "notional USD",
    "RSI",
    "EMA fast",
    "EMA slow",
    "MACD hist",
    "technical",
    "sentiment",
    "Kronos",
    "confidence",
    "P(up)",
)


def entries_table(decisions: Sequence[Mapping[str, Any]]) -> Table:
    """Every ENTER decision with the gate numbers behind it (decisions.csv has every decision)."""
    rows = [
        (
            time_text(d.get("time")),
            cell(d.get("symbol")),
            cell(d.get("tier")),
            money_text(_number(d.get("notional"))),
            number_text(_number(d.get("rsi")), "{:.1f}"),
            price_text(_number(d.get("ema_fast"))),
            price_text(_number(d.get("ema_slow"))),
            price_text(_number(d.get("macd_hist"))),
            cell(d.get("technical")),
            cell(d.get("sentiment")),
            cell(d.get("kronos_signal")),
            number_text(_number(d.get("kronos_confidence")), "{:.3f}"),
            number_text(_number(d.get("p_up")), "{:.3f}"),
        )
        for d in decisions
        if d.get("action") == "ENTER"
    ]
    return Table(
        ENTRY_COLUMNS,
        rows,
        text_columns=frozenset({"symbol", "tier", "technical", "sentiment", "Kronos"}),
        scroll=True,
    )


def skip_table(summary: Mapping[str, Any]) -> Table:
    return Table(("reason", "count"), [(k, str(v)) for k, v in summary["decisions"]["skip_reasons"].items()])


def ablation_table(ablation: Sequence[Mapping[str, Any]]) -> Table:
    """ablation.csv's rows (variant, trades, return %, win rate, Sharpe, max drawdown %, fees), rounded."""
    columns = (
        "variant",
        "trades",
        better("return", HIGHER),
        better("win rate", HIGHER),
        better("Sharpe", HIGHER),
        "max drawdown",
        "fees USD",
    )
    rows = [
        (
            cell(r.get("variant")),
            cell(r.get("trades")),
            signed_pct_points(_number(r.get("return_pct"))),
            share_text(_number(r.get("win_rate"))),
            number_text(_number(r.get("sharpe")), "{:.2f}"),
            signed_pct_points(None if (dd := _number(r.get("max_drawdown_pct"))) is None else -dd),
            money_text(_number(r.get("fees_usd"))),
        )
        for r in ablation
    ]
    return Table(columns, rows)


def rules_table(summary: Mapping[str, Any]) -> Table:
    return pairs_table([("fills", summary["rules"]["fills"]), ("intra-bar exits", summary["rules"]["intra_bar"])])


def _number(value: Any) -> float | None:
    """summary.json keeps money as decimal strings and CSV rows may hold text: a float for formatting."""
    if value is None or value == "":
        return None
    return float(value)
