"""Ablation: the same period replayed with each gate switched off in turn, from the same signals.

Why: a backtest of the configured bot says what the bot did, not what Kronos (or any gate) added. Each
variant replays the period through the same engine, executor, simulated broker and exits, from the
signals the main run already computed (forecasts come from the cache: an ablation adds replay time only):

  all               the three gates as configured (the main run: its row equals summary.json)
  no_kronos         technical + sentiment, Kronos ignored (a technical PASS is required to enter)
  kronos_alone      Kronos alone (sentiment never vetoes, technical not required)
  technical_alone   the technical gate alone (Kronos and sentiment ignored)
  every_hour        enter whenever the risk rules allow: the cost of trading itself, a reference
A gate that is "ignored" always says yes (Kronos UP and actionable, sentiment NEUTRAL), so entries then
take the `kronos_only` size. The variants share every other setting (sizes, risk rules, exits, costs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kronos_bot.backtest.data import BarStore
from kronos_bot.backtest.replay import Replay
from kronos_bot.backtest.signals import HourSignals
from kronos_bot.backtest.summary import build_summary
from kronos_bot.config import Settings
from kronos_bot.domain import (
    GateResults,
    KronosResult,
    KronosSignal,
    SentimentResult,
    SentimentVerdict,
)

COLUMNS = ("variant", "trades", "return_pct", "win_rate", "sharpe", "max_drawdown_pct", "fees_usd")

_KRONOS_YES = KronosResult(
    KronosSignal.UP, confidence=1.0, actionable=True, method="ablation", reason="ablation: Kronos ignored"
)
_SENTIMENT_YES = SentimentResult(SentimentVerdict.NEUTRAL, reason="ablation: sentiment ignored")


def _gates(kronos: bool, sentiment: bool) -> Callable[[GateResults], GateResults]:
    def change(g: GateResults) -> GateResults:
        return replace(
            g, kronos=g.kronos if kronos else _KRONOS_YES, sentiment=g.sentiment if sentiment else _SENTIMENT_YES
        )

    return change


def _hours(change: Callable[[GateResults], GateResults]) -> Callable[[HourSignals], HourSignals]:
    return lambda s: replace(s, gates=[change(g) for g in s.gates])


# name -> (keep Kronos, keep sentiment, require a technical PASS for kronos_only entries)
VARIANTS: dict[str, tuple[bool, bool, bool | None]] = {
    "no_kronos": (False, True, True),
    "kronos_alone": (True, False, False),
    "technical_alone": (False, False, True),
    "every_hour": (False, False, False),
}


def variant_settings(settings: Settings, require_technical: bool | None) -> Settings:
    if require_technical is None:
        return settings
    engine = settings.engine.model_copy(update={"require_technical_for_kronos_only": require_technical})
    return settings.model_copy(update={"engine": engine})


def row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """One ablation.csv row from a run's summary."""

    def pct(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 4)

    win = summary["trades"]["win_rate"]
    return {
        "variant": name,
        "trades": summary["trades"]["total"],
        "return_pct": pct(summary["period_return"]),
        "win_rate": None if win is None else round(win, 4),
        "sharpe": summary["sharpe_annualized"],
        "max_drawdown_pct": pct(summary["max_drawdown"]),
        "fees_usd": summary["fees_usd"],
    }


def run_ablation(main: Any, store: BarStore, signals: list[HourSignals]) -> list[dict[str, Any]]:
    """The `all` row from the main run, then one replay per variant (see the module doc)."""
    from kronos_bot.backtest.runner import BacktestRun, replay_hours

    rows = [row("all", build_summary(main))]
    for name, (kronos, sentiment, require_technical) in VARIANTS.items():
        settings = variant_settings(main.settings, require_technical)
        transform = _hours(_gates(kronos, sentiment))
        run = BacktestRun(settings=settings, period=main.period, sentiment=main.sentiment)
        run.model_info = main.model_info
        replay = Replay(settings, store, main.period.start)
        try:
            replay_hours(
                replay,
                run,
                signals,
                store,
                main.period,
                transform=transform,
            )
        finally:
            replay.close()
        rows.append(row(name, build_summary(run)))
    return rows
