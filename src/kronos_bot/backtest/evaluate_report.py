"""Outputs of `kronos-bot evaluate`: summary.json, calibration.png and the table printed on stdout."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kronos_bot.backtest.charts import calibration_chart
from kronos_bot.backtest.evaluate import EvaluateRun
from kronos_bot.backtest.forecast_scores import CHOPPY, FORECASTERS, KRONOS, TRENDING, reliability, score_table
from kronos_bot.backtest.report import skill_table
from kronos_bot.skill.summary import overall_line, pit_text

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


def table_lines(summary: dict[str, Any]) -> list[str]:
    """Hit rate / Brier / MAE per group (all, regimes, symbols) for each forecaster."""
    lines = [
        f"forecast quality at +{summary['horizon_bars']} h, {summary['samples']} sample(s), "
        f"{summary['origins']} forecasts, {summary['period']['from']} -> {summary['period']['to']}",
        f"{'group':<12} {'forecaster':<10} {'n':>6} {'hit %':>6} {'brier':>6} {'mae %':>6}",
    ]
    scores = summary["scores"]
    order = ["all", TRENDING, CHOPPY] + [g for g in scores if g not in ("all", TRENDING, CHOPPY)]
    for group in order:
        if group not in scores:
            continue
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
    (out / "report.html").write_text(
        render_evaluate_html(summary, run.skill, out / "calibration.png"), encoding="utf-8"
    )
    return summary


def render_evaluate_html(summary: dict[str, Any], skill: dict[str, Any], chart: Path) -> str:
    """The self-contained evaluation page: skill table, reliability diagram, PIT histogram, scores."""
    png = base64.b64encode(chart.read_bytes()).decode("ascii")
    overall = skill.get("overall") or {}
    pit = "\n".join(pit_text(overall.get("pit_histogram") or [0] * 10))
    scores = html.escape("\n".join(table_lines(summary)))
    period = f"{summary['period']['from']} &rarr; {summary['period']['to']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kronos-bot evaluate {html.escape(summary["period"]["from"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }} pre {{ font-size: 0.85em; }}
</style></head><body>
<h1>Forecast quality {period}</h1>
<p>{summary["origins"]} forecasts at +{summary["horizon_bars"]} h with {summary["samples"]} sampled path(s).
<b>Lower Brier, CRPS and MAE are better</b>; a skill score (BSS, CRPSS) above 0 beats the no-change random
walk on the same window, below 0 is worse than it.</p>
<h2>Skill (as the live trader scores it)</h2>
{skill_table(skill)}
<h2>Reliability of P(up)</h2>
<p>A calibrated forecaster lies on the diagonal: of the forecasts saying 70 %, 70 % went up.</p>
<img alt="reliability diagram" src="data:image/png;base64,{png}">
<h2>PIT histogram</h2>
<p>Where each outcome fell among the sampled paths: flat when calibrated, U-shaped when the bands are too
narrow (outcomes keep landing outside them), humped when too wide.</p>
<pre>{html.escape(pit)}</pre>
<h2>Kronos vs the baselines, by regime and symbol</h2>
<pre>{scores}</pre>
</body></html>
"""
