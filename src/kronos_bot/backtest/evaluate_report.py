"""Outputs of `kronos-bot evaluate`: summary.json, skill.json, calibration.png, pit.png, report.html (Jinja2
template `templates/evaluate.html.j2`) and the table printed on stdout. Every score column says which way
is better, on the page and on the screen."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kronos_bot.backtest.charts import calibration_chart, pit_chart
from kronos_bot.backtest.evaluate import EvaluateRun
from kronos_bot.backtest.forecast_scores import CHOPPY, FORECASTERS, KRONOS, TRENDING, reliability, score_table
from kronos_bot.backtest.formatting import number_text, share_text
from kronos_bot.backtest.pages import png_data_uri, render_page
from kronos_bot.backtest.tables import HIGHER, LOWER, Table, better, pairs_table, skill_table
from kronos_bot.skill.summary import overall_line

REGIME_RULE = (
    "Kaufman efficiency ratio of the context closes |c[-1]-c[0]| / sum|c[i]-c[i-1]|; "
    "trending when >= {threshold}, else choppy"
)


def build_evaluate_summary(run: EvaluateRun) -> dict[str, Any]:
    o = run.options
    table = score_table(run.outcomes)
    return {
        "period": {"from": run.period.start.isoformat(), "to": run.period.end.isoformat()},
        "symbols": list(run.settings.symbols),
        "horizon_bars": o.horizon,
        "stride_hours": o.stride,
        "samples": run.settings.gates.kronos.samples,
        "seed": run.settings.gates.kronos.seed,
        "origins": len(run.outcomes),
        "skipped": run.skipped,
        "scores": {group: {name: asdict(s) for name, s in by_name.items()} for group, by_name in table.items()},
        "reliability": {name: reliability(run.outcomes, name, o.bins) for name in (KRONOS, "drift")},
        "definitions": {
            "hit_rate": "share of origins where (predicted close > last close) == (actual close > last close)",
            "brier": "mean (P(up) - 1[actual > last])^2; P(up) = share of sampled paths above the last close "
            "(1 sample: 0 or 1); no_change uses 0.5, drift 1/0 by the sign of its mean log return",
            "mae_pct": "mean |predicted - actual| / last close x 100",
            "drift": f"last close x exp(horizon x mean of the last {o.drift_window} hourly log returns)",
            "regime": REGIME_RULE.format(threshold=o.trend_threshold),
        },
        "forecasts": run.forecasts,
        "skill": {k: v for k, v in (run.skill.get("overall") or {}).items() if k != "windows"},
        "seconds": round(run.seconds, 3),
    }


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "   n/a" if value is None else f"{value * scale:6.{digits}f}"


def group_order(scores: Mapping[str, Any]) -> list[str]:
    """All forecasts first, then the two regimes, then the symbols (as they come)."""
    head = [g for g in ("all", TRENDING, CHOPPY) if g in scores]
    return head + [g for g in scores if g not in head]


SCORE_COLUMNS = (
    "group",
    "forecaster",
    "n",
    better("hit rate", HIGHER),
    better("Brier", LOWER),
    better("MAE %", LOWER),
)


def scores_table(summary: Mapping[str, Any]) -> Table:
    """summary.json's scores: hit rate, Brier and MAE of Kronos and the baselines per group."""
    rows = []
    for group in group_order(summary["scores"]):
        for i, name in enumerate(FORECASTERS):
            s = summary["scores"][group][name]
            rows.append(
                (
                    group if i == 0 else "",
                    name,
                    str(s["n"]),
                    share_text(s["hit_rate"]),
                    number_text(s["brier"]),
                    number_text(s["mae_pct"], "{:.3f}"),
                )
            )
    return Table(SCORE_COLUMNS, rows, text_columns=frozenset({"forecaster"}))


def table_lines(summary: dict[str, Any]) -> list[str]:
    """Hit rate / Brier / MAE per group (all, regimes, symbols) for each forecaster."""
    lines = [
        f"forecast quality at +{summary['horizon_bars']} h, {summary['samples']} sample(s), "
        f"{summary['origins']} forecasts, {summary['period']['from']} -> {summary['period']['to']}",
        f"{'group':<12} {'forecaster':<10} {'n':>6} {'hit %':>6} {'brier':>6} {'mae %':>6}",
    ]
    scores = summary["scores"]
    for group in group_order(scores):
        for i, name in enumerate(FORECASTERS):
            s = scores[group][name]
            lines.append(
                f"{group if i == 0 else '':<12} {name:<10} {s['n']:>6} {_fmt(s['hit_rate'], 100)} "
                f"{_fmt(s['brier'], 1, 3)} {_fmt(s['mae_pct'], 1, 3)}"
            )
    if summary.get("skill"):
        lines.append(f"kronos skill: {overall_line(summary['skill'])}")
    lines.append("higher hit % is better; lower brier, mae and CRPS are better (BSS / CRPSS > 0 beat no-change)")
    if summary["skipped"]:
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in summary["skipped"].items()))
    return lines


def write_evaluate_report(run: EvaluateRun, out_dir: str | Path) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = build_evaluate_summary(run)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "skill.json").write_text(json.dumps(run.skill, indent=2, default=str) + "\n", encoding="utf-8")
    calibration_chart(
        out / "calibration.png",
        summary["reliability"],
        title=f"Reliability of P(up) at +{run.options.horizon} h ({summary['origins']} forecasts)",
    )
    overall = run.skill.get("overall") or {}
    pit_chart(out / "pit.png", overall.get("pit_histogram") or [0] * 10, title="PIT histogram of Kronos's forecasts")
    (out / "report.html").write_text(render_evaluate_html(summary, run.skill, out), encoding="utf-8")
    return summary


def render_evaluate_html(summary: Mapping[str, Any], skill: Mapping[str, Any], charts: Path) -> str:
    """The self-contained evaluation page: skill table, scores per group, reliability diagram, PIT
    histogram (the charts are read from `charts`, the output directory)."""
    return render_page(
        "evaluate.html.j2",
        summary=summary,
        skill=skill_table(skill),
        scores=scores_table(summary),
        calibration_png=png_data_uri(charts / "calibration.png"),
        pit_png=png_data_uri(charts / "pit.png"),
        skipped=Table(("reason", "count"), [(k, str(v)) for k, v in summary["skipped"].items()]),
        definitions=pairs_table(summary["definitions"].items()),
    )
