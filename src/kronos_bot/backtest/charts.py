"""PNG charts with matplotlib's Agg canvas (no display, no pyplot global state, safe on a headless VM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from kronos_bot.backtest import metrics
from kronos_bot.backtest.price_panels import PricePanel


def _figure(rows: int, height: float, ratios: Sequence[float] | None = None, sharex: bool = True) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex and rows > 1, height_ratios=ratios, squeeze=False)
    return fig, [row[0] for row in axes]


def equity_chart(
    path: Path,
    times: Sequence[datetime],
    equity: Sequence[float],
    matched: Sequence[float],
    benchmark: Sequence[float],
    title: str = "",
) -> None:
    """Top: the strategy against buy & hold scaled to its average exposure (same money at risk, so the
    same scale); middle: the plain, fully invested equal-weight buy & hold; bottom: drawdowns in percent."""
    fig, (top, middle, bottom) = _figure(3, 8.0, ratios=[3, 2, 1.4])
    top.plot(times, equity, label="strategy", color="tab:blue", linewidth=1.2)
    top.plot(times, matched, label="buy & hold at the strategy's exposure", color="tab:orange", linewidth=1.0)
    top.set_ylabel("USD")
    top.ticklabel_format(axis="y", style="plain", useOffset=False)  # 10,002 reads better than 2 + 1e4
    top.set_title(title or "Equity")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    middle.plot(times, benchmark, label="buy & hold (equal weight, fully invested)", color="tab:gray", linewidth=1.0)
    middle.set_ylabel("USD")
    middle.ticklabel_format(axis="y", style="plain", useOffset=False)
    middle.legend(loc="upper left")
    middle.grid(alpha=0.3)
    bottom.fill_between(
        times, [-100 * d for d in metrics.drawdowns(equity)], 0, color="tab:red", alpha=0.4, label="strategy"
    )
    bottom.plot(
        times,
        [-100 * d for d in metrics.drawdowns(matched)],
        color="tab:orange",
        linewidth=0.8,
        label="exposure-matched",
    )
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower left")
    _concise_dates(bottom)
    fig.savefig(path)


def price_figure(panels: Sequence[PricePanel]) -> Any:
    """One price line per symbol with its trades: entries as green triangles up, exits as triangles down
    (blue a win, red a loss after fees). Returned undrawn so tests can read the markers off the axes."""
    fig, axes = _figure(max(1, len(panels)), 0.4 + 2.2 * max(1, len(panels)))
    for ax, panel in zip(axes, panels, strict=False):
        ax.plot(panel.times, panel.prices, color="tab:gray", linewidth=0.9)
        if panel.entries:
            ax.scatter(
                [m.time for m in panel.entries],
                [m.price for m in panel.entries],
                marker="^",
                color="tab:green",
                s=36,
                zorder=3,
                label=f"entry ({len(panel.entries)})",
                gid="entries",
            )
        if panel.exits:
            ax.scatter(
                [m.time for m in panel.exits],
                [m.price for m in panel.exits],
                marker="v",
                color=["tab:blue" if m.win else "tab:red" for m in panel.exits],
                s=36,
                zorder=3,
                label=f"exit ({len(panel.exits)}; blue win, red loss)",
                gid="exits",
            )
        ax.set_ylabel(panel.symbol)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.grid(alpha=0.3)
    _concise_dates(axes[-1])
    fig.legend(handles=_marker_legend(), loc="outside upper center", ncols=3, fontsize="small")
    return fig


def _marker_legend() -> list[Any]:
    """One legend for all panels (per-panel legends hide the start of the price lines)."""
    from matplotlib.lines import Line2D

    def proxy(marker: str, color: str, label: str) -> Any:
        return Line2D([], [], linestyle="none", marker=marker, color=color, markersize=7, label=label)

    return [
        proxy("^", "tab:green", "entry (fill price)"),
        proxy("v", "tab:blue", "exit, a win after fees"),
        proxy("v", "tab:red", "exit, a loss after fees"),
    ]


def _concise_dates(ax: Any) -> None:
    """Tick labels that do not collide at a month or year boundary (2024-12-31 | Jan 01)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def price_chart(path: Path, panels: Sequence[PricePanel]) -> None:
    price_figure(panels).savefig(path)


def calibration_chart(path: Path, curves: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> None:
    """Reliability diagram: mean forecast P(up) per bin vs observed frequency of up moves, with counts."""
    fig, (top, bottom) = _figure(2, 7.0, ratios=[3, 1])
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


def pit_chart(path: Path, histogram: Sequence[int], title: str = "") -> None:
    """PIT histogram: where each outcome fell among the sampled paths, in equal-width bins, with the flat
    line a calibrated forecaster would reach (U-shaped: bands too narrow; humped: too wide)."""
    fig, (ax,) = _figure(1, 3.2)
    bins = max(1, len(histogram))
    ax.bar(
        [i / bins for i in range(bins)],
        list(histogram),
        width=1 / bins,
        align="edge",
        color="tab:blue",
        alpha=0.7,
        edgecolor="white",
    )
    ax.axhline(sum(histogram) / bins, color="black", linestyle="--", linewidth=0.8, label="calibrated (flat)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("rank of the outcome among the sampled paths (PIT)")
    ax.set_ylabel("forecasts")
    ax.set_title(title or "PIT histogram")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.savefig(path)


def history_chart(
    path: Path, numbers: Sequence[int], values: Sequence[float], best: Sequence[float], title: str = ""
) -> None:
    """An optimisation history: each scored trial's objective (dots) and the best so far (a step line)."""
    fig, (ax,) = _figure(1, 3.6)
    ax.scatter(numbers, values, s=14, color="tab:blue", alpha=0.7, label="trial (in-sample objective)")
    ax.step(numbers, best, where="post", color="tab:red", linewidth=1.2, label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel("objective")
    ax.set_title(title or "Optimisation history")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.savefig(path)


def importance_chart(path: Path, importances: Mapping[str, float], title: str = "") -> None:
    """Parameter importances as horizontal bars, the most important on top."""
    names = list(importances)[::-1]
    fig, (ax,) = _figure(1, 0.8 + 0.35 * max(1, len(names)))
    ax.barh(names, [importances[n] for n in names], color="tab:blue", alpha=0.8)
    ax.set_xlabel("importance (share of the objective's variance)")
    ax.set_title(title or "Parameter importances")
    ax.grid(alpha=0.3, axis="x")
    fig.savefig(path)


def curves_chart(
    path: Path,
    curves: Mapping[str, tuple[Sequence[datetime], Sequence[float]]],
    shaded: Sequence[tuple[datetime, datetime]] = (),
    title: str = "",
) -> None:
    """Several equity curves on one axis, with time spans shaded (the out-of-sample parts of a study)."""
    fig, (ax,) = _figure(1, 4.4)
    for i, (start, end) in enumerate(shaded):
        ax.axvspan(start, end, color="tab:gray", alpha=0.15, label="out-of-sample" if i == 0 else None)
    for name, (times, values) in curves.items():
        ax.plot(times, values, linewidth=1.1, label=name)
    ax.set_ylabel("USD")
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_title(title or "Equity")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    _concise_dates(ax)
    fig.savefig(path)
