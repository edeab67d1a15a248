"""Outputs of `kronos-bot evaluate`: summary.json, calibration.png and the table printed on stdout."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kronos_bot.backtest.charts import calibration_chart
from kronos_bot.backtest.evaluate import EvaluateRun
from kronos_bot.backtest.forecast_scores import CHOPPY, FORECASTERS, KRONOS, TRENDING, reliability, score_table

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
    if summary["skipped"]:
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in summary["skipped"].items()))
    return lines


def write_evaluate_report(run: EvaluateRun, out_dir: str | Path) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = build_evaluate_summary(run)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    calibration_chart(
        out / "calibration.png",
        summary["reliability"],
        title=f"Reliability of P(up) at +{run.options.horizon} h ({summary['origins']} forecasts)",
    )
    return summary
