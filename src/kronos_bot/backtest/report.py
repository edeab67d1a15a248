"""Backtest output files and the short table printed at the end of a run.

`--out DIR` receives summary.json, trades.csv, decisions.csv, equity.png, prices.png and report.html. The
HTML page (Jinja2 template `templates/backtest.html.j2`) is self-contained (charts inlined as base64, no
scripts, no external files) so it can be mailed or opened from a copied directory. It shows every trade,
rounded for reading; of the decisions it shows the counts of SKIP reasons and every ENTER (the full list,
one row per symbol and hour, is decisions.csv).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kronos_bot.backtest import backtest_tables as bt
from kronos_bot.backtest.ablation import COLUMNS as ABLATION_COLUMNS
from kronos_bot.backtest.charts import equity_chart, price_chart
from kronos_bot.backtest.formatting import percent_text, share_text
from kronos_bot.backtest.pages import png_data_uri, render_page
from kronos_bot.backtest.price_panels import price_panels
from kronos_bot.backtest.rows import DECISION_COLUMNS, TRADE_COLUMNS, trade_row
from kronos_bot.backtest.runner import BacktestRun
from kronos_bot.backtest.summary import build_summary
from kronos_bot.backtest.tables import gates_table, skill_table
from kronos_bot.skill.summary import overall_line


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])


def write_backtest_report(run: BacktestRun, out_dir: str | Path) -> dict[str, Any]:
    """Write every output file; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = build_summary(run)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    write_csv(out / "trades.csv", TRADE_COLUMNS, (trade_row(p, run.end_marks.get(p.symbol)) for p in run.positions))
    write_csv(out / "decisions.csv", DECISION_COLUMNS, run.decisions)
    curves = bt.comparison_curves([float(p.equity) for p in run.equity], [float(v) for v in run.benchmark], summary)
    strategy, matched, plain = curves
    equity_chart(
        out / "equity.png",
        [p.time for p in run.equity],
        strategy.values,
        matched.values,
        plain.values,
        title=f"Backtest {run.period.label()}",
    )
    panels = price_panels(run)
    price_chart(out / "prices.png", panels)
    (out / "skill.json").write_text(json.dumps(run.skill, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "gates.json").write_text(json.dumps(run.gates, indent=2, default=str) + "\n", encoding="utf-8")
    if run.ablation:
        write_csv(out / "ablation.csv", ABLATION_COLUMNS, run.ablation)
    page = render_page(
        "backtest.html.j2",
        summary=summary,
        overview=bt.overview_table(summary, matched),
        exposure=share_text(bt.average_exposure(summary)),
        benchmarks=bt.benchmark_table(curves, summary),
        equity_png=png_data_uri(out / "equity.png"),
        price_png=png_data_uri(out / "prices.png"),
        price_captions=[p.caption() for p in panels],
        by_symbol=bt.group_table(run.positions, "symbol"),
        by_tier=bt.group_table(run.positions, "tier"),
        trades=bt.trade_table(run.positions, run.end_marks),
        entries=bt.entries_table(run.decisions),
        skips=bt.skip_table(summary),
        skill=skill_table(run.skill) if run.skill else None,
        gates=gates_table(run.gates) if run.gates else None,
        ablation=bt.ablation_table(run.ablation) if run.ablation else None,
        rules=bt.rules_table(summary),
    )
    (out / "report.html").write_text(page, encoding="utf-8")
    return summary


def summary_lines(
    summary: Mapping[str, Any],
    out_dir: str | Path | None = None,
    skill: Mapping[str, Any] | None = None,
    ablation: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """The short table printed at the end of `kronos-bot backtest` (with the run's skill line and its
    ablation table when it has them: the answer to "is Kronos helping" belongs on the screen)."""
    t = summary["trades"]
    tiers = ", ".join(f"{k} {v}" for k, v in sorted(t["per_tier"].items())) or "none"
    f = summary["kronos"]["forecasts"]
    bh = summary["buy_and_hold"]
    lines = [
        f"backtest {summary['period']['from']} -> {summary['period']['to']} ({summary['period']['hours']} h), "
        f"{' '.join(summary['symbols'])}",
        f"  equity      {summary['starting_cash']} -> {summary['final_equity']} USD   "
        f"return {percent_text(summary['period_return'])}"
        f"   max drawdown {percent_text(-summary['max_drawdown'] if summary['max_drawdown'] is not None else None)}"
        f"   Sharpe {summary['sharpe_annualized']}   realized P&L {summary['realized_pnl_usd']} USD",
        f"  trades      {t['total']} ({tiers}; {t['open_at_end']} open at end)   win rate "
        f"{percent_text(t['win_rate']).lstrip('+')}   avg hold {t['avg_hold_hours']} h   fees {summary['fees_usd']} USD"
        f"   time in market {percent_text(summary['exposure']['time_in_market']).lstrip('+')}"
        f"   exposure {percent_text(summary['exposure']['avg_invested_fraction'], signed=False)}",
        "  buy & hold  "
        + "   ".join(f"{s} {percent_text(r)}" for s, r in bh["per_symbol"].items())
        + f"   equal weight {percent_text(bh['equal_weight'])}",
        f"  sentiment   {summary['sentiment']}",
        f"  forecasts   {f.get('computed', 0)} computed, {f.get('cached', 0)} cached "
        f"({f.get('forecaster_calls', 0)} model calls, {f.get('compute_seconds', 0)} s)   run {summary['seconds']} s",
    ]
    if skill and skill.get("overall"):
        lines.append(f"  skill       {overall_line(skill['overall'])}")
    if ablation:
        lines.append(f"  ablation    {'variant':<16} {'trades':>6} {'return %':>9} {'win rate':>9} {'Sharpe':>8}")
        for r in ablation:
            win = "n/a" if r["win_rate"] is None else f"{r['win_rate']:.1%}"
            ret = "n/a" if r["return_pct"] is None else f"{r['return_pct']:+.2f}"
            sharpe = "n/a" if r["sharpe"] is None else f"{r['sharpe']:.2f}"
            lines.append(f"              {r['variant']:<16} {r['trades']:>6} {ret:>9} {win:>9} {sharpe:>8}")
    if out_dir is not None:
        lines.append(f"  report      {Path(out_dir) / 'report.html'}")
        if skill:
            lines.append(f"  journal     kronos-bot skill --journal {Path(out_dir) / 'journal.sqlite'} [--gates]")
    return lines
