"""The walk-forward check: the best trial and the defaults replayed on every fold's parts.

Why the defaults and buy-and-hold beside the best trial: an in-sample winner is expected to look good
in-sample; what matters is whether, on hours it never saw, it beats what the user already runs (the
loaded config) and simply holding the coins. The verdicts say so in words, fold by fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kronos_bot.backtest.formatting import percent_text
from kronos_bot.backtest.optimize.folds import Fold
from kronos_bot.backtest.optimize.study import score
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.trials import TrialData, TrialResult, run_trial
from kronos_bot.config import Settings

IN_SAMPLE = "in-sample"
OUT_OF_SAMPLE = "out-of-sample"


@dataclass(frozen=True)
class FoldPart:
    fold: int
    part: str  # IN_SAMPLE or OUT_OF_SAMPLE
    period: Period
    best: TrialResult
    defaults: TrialResult


@dataclass(frozen=True)
class WalkForward:
    objective: str
    parts: list[FoldPart]
    best_curve: list[tuple[datetime, float]]  # the whole period, best trial
    default_curve: list[tuple[datetime, float]]  # the whole period, the loaded config
    verdicts: list[str]  # one line per out-of-sample finding, plain words

    @property
    def out_of_sample_worse(self) -> bool:
        return any("WORSE" in v for v in self.verdicts)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _verdicts(parts: list[FoldPart], objective: str) -> list[str]:
    lines = []
    for p in parts:
        if p.part != OUT_OF_SAMPLE:
            continue
        best, defaults = score(p.best, objective), score(p.defaults, objective)
        where = f"fold {p.fold} out-of-sample ({p.period.label()})"
        if defaults is not None and (best is None or best < defaults):
            lines.append(
                f"{where}: the best trial's {objective} {_number(best)} is WORSE than the defaults' {_number(defaults)}"
            )
        hold = p.best.buy_and_hold_return
        if hold is not None and p.best.total_return < hold:
            lines.append(
                f"{where}: the best trial's return {percent_text(p.best.total_return)} is WORSE than "
                f"buy-and-hold's {percent_text(hold)}"
            )
    if not lines:
        lines.append(
            "out-of-sample, the best trial did at least as well as the defaults and buy-and-hold in every fold"
        )
    return lines


def walk_forward_check(
    data: TrialData, best: Settings, defaults: Settings, folds: list[Fold], objective: str
) -> WalkForward:
    """Replay both settings on each fold's in-sample and out-of-sample part, and on the whole period."""
    parts = []
    for fold in folds:
        for name, period in ((IN_SAMPLE, fold.in_sample), (OUT_OF_SAMPLE, fold.out_of_sample)):
            parts.append(
                FoldPart(
                    fold.number,
                    name,
                    period,
                    run_trial(data, best, period.start, period.end),
                    run_trial(data, defaults, period.start, period.end),
                )
            )
    start, end = folds[0].start, folds[-1].end
    return WalkForward(
        objective=objective,
        parts=parts,
        best_curve=run_trial(data, best, start, end).equity,
        default_curve=run_trial(data, defaults, start, end).equity,
        verdicts=_verdicts(parts, objective),
    )
