"""Backtest output files and the short table printed at the end of a run.

`--out DIR` receives summary.json, trades.csv, decisions.csv, equity.png and report.html. The HTML page
is self-contained (the chart inlined as base64, tables inline, no scripts, no external files) so it can be
mailed or opened from a copied directory. It shows every trade; of the decisions it shows the counts of
SKIP reasons and every ENTER (the full list, one row per symbol and hour, is decisions.csv).
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kronos_bot.backtest.ablation import COLUMNS as ABLATION_COLUMNS
from kronos_bot.backtest.charts import equity_chart
from kronos_bot.backtest.rows import DECISION_COLUMNS, TRADE_COLUMNS, trade_row
from kronos_bot.backtest.runner import BacktestRun
from kronos_bot.backtest.summary import build_summary
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
    trades = [trade_row(p, run.end_marks.get(p.symbol)) for p in run.positions]
    write_csv(out / "trades.csv", TRADE_COLUMNS, trades)
    write_csv(out / "decisions.csv", DECISION_COLUMNS, run.decisions)
    equity_chart(
        out / "equity.png",
        [p.time for p in run.equity],
        [float(p.equity) for p in run.equity],
        [float(v) for v in run.benchmark],
        title=f"Backtest {run.period.label()}",
    )
    (out / "skill.json").write_text(json.dumps(run.skill, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "gates.json").write_text(json.dumps(run.gates, indent=2, default=str) + "\n", encoding="utf-8")
    if run.ablation:
        write_csv(out / "ablation.csv", ABLATION_COLUMNS, run.ablation)
    page = render_html(
        summary, trades, run.decisions, out / "equity.png", skill=run.skill, gates=run.gates, ablation=run.ablation
    )
    (out / "report.html").write_text(page, encoding="utf-8")
    return summary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.2f} %"


def _table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(pairs: Iterable[tuple[str, Any]]) -> str:
    return _table(("", "value"), ({"": k, "value": v} for k, v in pairs))


def skill_table(skill: Mapping[str, Any]) -> str:
    """The skill numbers (overall and per symbol) as an HTML table; lower Brier and CRPS are better."""
    rows = []
    groups = [("overall", skill.get("overall") or {}), *(skill.get("by_symbol") or {}).items()]
    for name, s in groups:
        if not s:
            continue
        ci = s.get("hit_rate_ci") or [None, None]
        rows.append(
            {
                "group": name,
                "n": s.get("n"),
                "hit rate": _share(s.get("hit_rate")),
                "95 % interval": f"{_share(ci[0])} - {_share(ci[1])}",
                "Brier": _num(s.get("brier")),
                "no-change Brier": _num(s.get("brier_baseline")),
                "BSS": _num(s.get("brier_skill"), "{:+.3f}"),
                "CRPS %": _num(s.get("crps")),
                "no-change CRPS %": _num(s.get("crps_baseline")),
                "CRPSS": _num(s.get("crps_skill"), "{:+.3f}"),
                "p10-p90 coverage": _share(s.get("coverage_p10_p90")),
            }
        )
    return _table(SKILL_COLUMNS, rows)


SKILL_COLUMNS = (
    "group",
    "n",
    "hit rate",
    "95 % interval",
    "Brier",
    "no-change Brier",
    "BSS",
    "CRPS %",
    "no-change CRPS %",
    "CRPSS",
    "p10-p90 coverage",
)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def render_html(
    summary: Mapping[str, Any],
    trades: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    chart: Path,
    *,
    skill: Mapping[str, Any] | None = None,
    gates: Mapping[str, Mapping[str, Any]] | None = None,
    ablation: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The self-contained report page."""
    png = base64.b64encode(chart.read_bytes()).decode("ascii")
    t = summary["trades"]
    overview = _pairs(
        [
            ("period", f"{summary['period']['from']} to {summary['period']['to']} ({summary['period']['hours']} h)"),
            ("symbols", ", ".join(summary["symbols"])),
            ("starting cash / final equity", f"{summary['starting_cash']} / {summary['final_equity']} USD"),
            ("period return", _pct(summary["period_return"])),
            ("max drawdown", _pct(-summary["max_drawdown"] if summary["max_drawdown"] is not None else None)),
            ("Sharpe (hourly, annualized)", summary["sharpe_annualized"]),
            ("trades (closed / open at end)", f"{t['total']} ({t['closed']} / {t['open_at_end']})"),
            ("trades per tier", ", ".join(f"{k}: {v}" for k, v in t["per_tier"].items()) or "none"),
            ("win rate", _pct(t["win_rate"]).lstrip("+") if t["win_rate"] is not None else "n/a"),
            ("average hold", f"{t['avg_hold_hours']} h" if t["avg_hold_hours"] is not None else "n/a"),
            ("fees", f"{summary['fees_usd']} USD"),
            ("time in market", _pct(summary["exposure"]["time_in_market"]).lstrip("+")),
            ("sentiment", summary["sentiment"]),
            ("costs", f"fee {summary['costs']['fee_percent']} %, slippage {summary['costs']['slippage_bps']} bps"),
            ("forecasts", ", ".join(f"{k}: {v}" for k, v in summary["kronos"]["forecasts"].items())),
            ("config fingerprint", summary["config_fingerprint"]),
        ]
    )
    bh = summary["buy_and_hold"]
    bh_rows = [{"symbol": s, "buy & hold": _pct(r)} for s, r in bh["per_symbol"].items()]
    bh_rows.append({"symbol": "equal weight", "buy & hold": _pct(bh["equal_weight"])})
    skips = [{"reason": k, "count": v} for k, v in summary["decisions"]["skip_reasons"].items()]
    entered = [d for d in decisions if d.get("action") == "ENTER"]
    rules = _pairs([("fills", summary["rules"]["fills"]), ("intra-bar exits", summary["rules"]["intra_bar"])])
    grading = ""
    if skill:
        grading += (
            "<h2>Forecast skill (scored like the live trader; lower Brier and CRPS are better, "
            "BSS / CRPSS &gt; 0 beat the no-change random walk)</h2>" + skill_table(skill)
        )
    if gates:
        gate_rows = [
            {
                "reason / tier": k,
                "count": v["count"],
                "mean shadow return %": f"{v['mean_return_pct']:.3f}",
                "win rate": _share(v["win_rate"]),
            }
            for k, v in gates.items()
        ]
        grading += (
            "<h2>What each gate's vetoes saved or cost (shadow entries at the next open, after fees)</h2>"
            + _table(("reason / tier", "count", "mean shadow return %", "win rate"), gate_rows)
        )
    if ablation:
        grading += "<h2>Ablation (same period and signals, one gate switched off at a time)</h2>" + _table(
            ABLATION_COLUMNS, ablation
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kronos-bot backtest {html.escape(summary["period"]["from"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Backtest {html.escape(summary["period"]["from"])} &rarr; {html.escape(summary["period"]["to"])}</h1>
<p><b>Sentiment:</b> {html.escape(summary["sentiment"])}</p>
{overview}
<img alt="equity and drawdown vs buy and hold" src="data:image/png;base64,{png}">
<h2>Buy &amp; hold over the same period</h2>
{_table(("symbol", "buy & hold"), bh_rows)}
<h2>Trades ({len(trades)})</h2>
{_table(TRADE_COLUMNS, trades)}
<h2>Entries ({len(entered)} ENTER decisions)</h2>
{_table(DECISION_COLUMNS, entered)}
<h2>Why the other decisions were SKIP</h2>
{_table(("reason", "count"), skips)}
{grading}
<h2>Rules of the replay</h2>
{rules}
<p>Full decision list: decisions.csv; every number: summary.json.</p>
</body></html>
"""


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
        f"return {_pct(summary['period_return'])}"
        f"   max drawdown {_pct(-summary['max_drawdown'] if summary['max_drawdown'] is not None else None)}"
        f"   Sharpe {summary['sharpe_annualized']}",
        f"  trades      {t['total']} ({tiers}; {t['open_at_end']} open at end)   win rate "
        f"{_pct(t['win_rate']).lstrip('+')}   avg hold {t['avg_hold_hours']} h   fees {summary['fees_usd']} USD"
        f"   time in market {_pct(summary['exposure']['time_in_market']).lstrip('+')}",
        "  buy & hold  "
        + "   ".join(f"{s} {_pct(r)}" for s, r in bh["per_symbol"].items())
        + f"   equal weight {_pct(bh['equal_weight'])}",
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
