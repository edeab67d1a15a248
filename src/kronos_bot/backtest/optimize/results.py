"""Everything a finished study leaves in --out, written all at once or not at all.

Why a staging folder: a study can run for hours and then fail while writing (a full disk, Ctrl-C). The
files are written into a hidden folder inside --out and moved into place only when every one of them
exists, so --out never holds a best.yaml from this run beside a report.html from the last one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from kronos_bot.backtest.optimize import outputs, overlay, report
from kronos_bot.backtest.optimize.study import PENALTY, StudyPlan, clean, shown_url
from kronos_bot.backtest.optimize.walkforward import WalkForward

FILES = ("best.yaml", "trials.csv", "summary.json", "report.html", "equity.png", "history.png", "importances.png")


@dataclass(frozen=True)
class StudyOutcome:
    """The study after its trials, as the outputs describe it."""

    plan: StudyPlan
    study: optuna.Study
    best: optuna.trial.FrozenTrial
    walk_forward: WalkForward
    ran: int  # trials run by this invocation (all its workers)
    seconds: float  # wall time of those trials

    @property
    def trials_per_second(self) -> float:
        return self.ran / self.seconds if self.seconds > 0 else 0.0


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best completed trial; ValueError saying why there is none (every combination refused)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
        reason = pruned[0].user_attrs.get("invalid", "") if pruned else ""
        raise ValueError(
            f"no trial completed in study {study.study_name!r} ({len(pruned)} refused by the settings model"
            + (f", e.g. {reason}" if reason else "")
            + "): narrow the search space"
        )
    return study.best_trial


def _overview(o: StudyOutcome) -> list[tuple[str, Any]]:
    counts = {s.name: len(o.study.get_trials(deepcopy=False, states=(s,))) for s in optuna.trial.TrialState}
    feasible = o.best.value is not None and o.best.value > PENALTY
    return [
        ("study", f"{o.plan.name} on {shown_url(o.plan.storage)}"),
        ("objective", f"{o.plan.objective}: mean over the folds' in-sample parts (maximized)"),
        ("folds", f"{len(o.plan.folds)} walk-forward folds"),
        ("trials", ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n)),
        ("speed", f"{o.ran} trials in {o.seconds:.1f} s here ({o.trials_per_second:.2f} trials/s)"),
        ("minimum trades", f"{o.plan.min_trades} closed trades over the in-sample parts, else penalized"),
        (
            "best trial",
            f"#{o.best.number}, in-sample {o.plan.objective} {_number(o.best.user_attrs.get('in_sample'))}, "
            f"{o.best.user_attrs.get('trades')} trades"
            + ("" if feasible else " (BELOW the minimum trades or undefined: no trial was feasible)"),
        ),
        ("search space", o.plan.space.source),
    ]


def _summary(o: StudyOutcome, changed: dict[str, Any]) -> dict[str, Any]:
    return {
        "study": o.plan.name,
        "storage": shown_url(o.plan.storage),
        "objective": o.plan.objective,
        "best": {
            "number": o.best.number,
            "value": o.best.value,
            "params": clean(o.best.params),
            "attrs": o.best.user_attrs,
        },
        "best_yaml": changed,
        "folds": [
            {
                "fold": p.fold,
                "part": p.part,
                "from": p.period.start.isoformat(),
                "to": p.period.end.isoformat(),
                "best": {k: v for k, v in vars(p.best).items() if k != "equity"},
                "defaults": {k: v for k, v in vars(p.defaults).items() if k != "equity"},
            }
            for p in o.walk_forward.parts
        ],
        "verdicts": o.walk_forward.verdicts,
        "trials_run": o.ran,
        "seconds": round(o.seconds, 3),
        "trials_per_second": round(o.trials_per_second, 3),
    }


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _write_all(stage: Path, out: Path, o: StudyOutcome, config_name: str) -> None:
    plan = o.plan
    changed = overlay.changed(plan.settings, clean(o.best.params))
    header = [
        f"kronos-bot optimize: best trial #{o.best.number} of study {plan.name!r} "
        f"(in-sample {plan.objective} {_number(o.best.user_attrs.get('in_sample'))}); only the keys it changed.",
        f"Check it merged onto your config: kronos-bot config check --config {config_name} "
        f"--config {out / 'best.yaml'}",
    ]
    outputs.write_best_yaml(stage / "best.yaml", changed, header)
    rows = outputs.trial_rows(o.study, plan.space)
    outputs.write_trials_csv(stage / "trials.csv", rows, plan.space)
    outputs.write_json(stage / "summary.json", _summary(o, changed))
    report.write_report(
        stage,
        study=o.study,
        wf=o.walk_forward,
        overview=_overview(o),
        rows=rows,
        paths=plan.space.paths,
        best_yaml=(stage / "best.yaml").read_text(encoding="utf-8"),
    )


def write_outcome(out: Path, o: StudyOutcome, config_name: str) -> list[Path]:
    """Write every output into `out` (created if needed); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".optimize-", dir=out))
    try:
        _write_all(stage, out, o, config_name)
        written: Sequence[Path] = [stage / name for name in FILES if (stage / name).exists()]
        for name in FILES:  # a stale chart of an earlier run must not sit beside this report
            if not (stage / name).exists() and (out / name).exists():
                (out / name).unlink()
        for path in written:
            os.replace(path, out / path.name)
        return [out / path.name for path in written]
    finally:
        shutil.rmtree(stage, ignore_errors=True)
