"""Walk-forward folds: K consecutive windows, each an in-sample part followed by an out-of-sample part.

Why one study over all folds' in-sample parts (the mean of their objectives) rather than one study per
fold: one best combination comes out, the one `best.yaml` can hold, and each fold's out-of-sample part
then shows how that very combination did on hours it was never scored on. A combination that wins only in
one regime scores worse on the mean, which is the point. (The in-sample part of a later fold lies after
an earlier fold's out-of-sample part; that is still no look-ahead for any one fold's test.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kronos_bot.backtest.period import Period

HOUR = timedelta(hours=1)
DEFAULT_IN_SAMPLE_SHARE = 0.7
MIN_IN_SAMPLE_HOURS = 24  # a day of hourly decisions: fewer says nothing about a threshold
MIN_OUT_OF_SAMPLE_HOURS = 12


@dataclass(frozen=True)
class Fold:
    number: int  # 1-based
    in_sample: Period
    out_of_sample: Period

    @property
    def start(self) -> datetime:
        return self.in_sample.start

    @property
    def end(self) -> datetime:
        return self.out_of_sample.end


def _fits(hours: int, in_sample_share: float) -> bool:
    ins = round(hours * in_sample_share)
    return ins >= MIN_IN_SAMPLE_HOURS and hours - ins >= MIN_OUT_OF_SAMPLE_HOURS


def hours_needed(folds: int, in_sample_share: float = DEFAULT_IN_SAMPLE_SHARE) -> int:
    """The shortest period that gives every fold its minimum in-sample and out-of-sample hours."""
    per_fold = MIN_IN_SAMPLE_HOURS + MIN_OUT_OF_SAMPLE_HOURS
    while not _fits(per_fold, in_sample_share):
        per_fold += 1
    return folds * per_fold


def walk_forward(period: Period, folds: int, in_sample_share: float = DEFAULT_IN_SAMPLE_SHARE) -> list[Fold]:
    """`folds` consecutive folds covering `period` (the last one takes the hours left over).

    ValueError, saying how long the period must be, when a part would be shorter than its minimum.
    """
    if folds < 1:
        raise ValueError(f"--folds must be at least 1 (got {folds})")
    if not 0 < in_sample_share < 1:
        raise ValueError(f"the in-sample share must be between 0 and 1 (got {in_sample_share})")
    size = period.hours // folds
    out: list[Fold] = []
    for i in range(folds):
        start = period.start + i * size * HOUR
        end = period.end if i == folds - 1 else start + size * HOUR
        hours = int((end - start) / HOUR)
        split = start + round(hours * in_sample_share) * HOUR
        if not _fits(hours, in_sample_share):
            need = hours_needed(folds, in_sample_share)
            raise ValueError(
                f"the period {period.label()} ({period.hours} h) is too short for {folds} fold(s): each needs "
                f"at least {MIN_IN_SAMPLE_HOURS} h in-sample and {MIN_OUT_OF_SAMPLE_HOURS} h out-of-sample "
                f"(at least {need} h in all); give a longer --from/--to or fewer --folds"
            )
        out.append(Fold(i + 1, Period(start, split), Period(split, end)))
    return out
