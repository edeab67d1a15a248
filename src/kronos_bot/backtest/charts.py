"""PNG charts with matplotlib's Agg canvas (no display, no pyplot global state, safe on a headless VM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from kronos_bot.backtest import metrics


def _figure(rows: int, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=rows > 1, height_ratios=[3, 1] if rows == 2 else None)
    return fig, axes


def equity_chart(
    path: Path, times: Sequence[datetime], equity: Sequence[float], benchmark: Sequence[float], title: str = ""
) -> None:
    """Equity and equal-weight buy & hold (top), drawdowns of both in percent (bottom)."""
    fig, (top, bottom) = _figure(2, 6.5)
    top.plot(times, equity, label="strategy", color="tab:blue", linewidth=1.2)
    top.plot(times, benchmark, label="buy & hold (equal weight)", color="tab:gray", linewidth=1.0, alpha=0.8)
    top.set_ylabel("USD")
    top.set_title(title or "Equity")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.fill_between(
        times, [-100 * d for d in metrics.drawdowns(equity)], 0, color="tab:red", alpha=0.4, label="strategy"
    )
    bottom.plot(
        times, [-100 * d for d in metrics.drawdowns(benchmark)], color="tab:gray", linewidth=0.8, label="buy & hold"
    )
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower left")
    fig.savefig(path)


def calibration_chart(path: Path, curves: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> None:
    """Reliability diagram: mean forecast P(up) per bin vs observed frequency of up moves, with counts."""
    fig, (top, bottom) = _figure(2, 7.0)
    top.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=0.8, label="perfectly calibrated")
    width = 0.9 / max(1, len(curves)) / 10
    for i, (name, bins) in enumerate(curves.items()):
        used = [b for b in bins if b["count"]]
        top.plot([b["mean_p"] for b in used], [b["frequency"] for b in used], marker="o", label=name)
        bottom.bar(
            [b["lo"] + 0.005 + i * width for b in bins],
            [b["count"] for b in bins],
            width=width,
            align="edge",
            label=name,
        )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("observed frequency of up")
    top.set_title(title or "Reliability of P(up)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.set_xlabel("forecast P(up)")
    bottom.set_ylabel("forecasts")
    bottom.grid(alpha=0.3)
    fig.savefig(path)
