"""report.html of a study (template `templates/optimize.html.j2`) and the fold table printed at the end.

The page answers, in this order: did the best trial hold up on hours it never saw (the verdicts and the
in-sample vs out-of-sample table, beside the defaults and buy-and-hold), how did the search go (history),
which settings mattered (importances), and what to put in the config (best.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from kronos_bot.backtest.charts import curves_chart, history_chart, importance_chart
from kronos_bot.backtest.formatting import number_text, percent_text
from kronos_bot.backtest.optimize.study import OBJECTIVES, PENALTY
from kronos_bot.backtest.optimize.walkforward import OUT_OF_SAMPLE, WalkForward
from kronos_bot.backtest.pages import png_data_uri, render_page
from kronos_bot.backtest.tables import HIGHER, Table, better, cell, pairs_table

MIN_TRIALS_FOR_IMPORTANCE = 4
TOP_TRIALS = 10


def fold_columns(objective: str) -> tuple[str, ...]:
    return (
        "fold",
        "part",
        "period (UTC)",
        "hours",
        better(f"best {objective}", HIGHER),
        f"defaults {objective}",
        "best return %",
        "defaults return %",
        "buy & hold %",
        "best trades",
        "defaults trades",
    )


def fold_rows(wf: WalkForward) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for p in wf.parts:
        rows.append(
            (
                str(p.fold),
                p.part,
                f"{p.period.start:%Y-%m-%d %H:%M} -> {p.period.end:%Y-%m-%d %H:%M}",
                str(p.period.hours),
                number_text(getattr(p.best, _field(wf.objective)), "{:.3f}"),
                number_text(getattr(p.defaults, _field(wf.objective)), "{:.3f}"),
                percent_text(p.best.total_return),
                percent_text(p.defaults.total_return),
                percent_text(p.best.buy_and_hold_return),
                str(p.best.trades),
                str(p.defaults.trades),
            )
        )
    return rows


def _field(objective: str) -> str:
    return OBJECTIVES[objective]


def fold_table(wf: WalkForward) -> Table:
    return Table(
        fold_columns(wf.objective),
        fold_rows(wf),
        text_columns=frozenset({"part", "period (UTC)"}),
        caption="best: the study's best trial; defaults: the loaded config (config/bot.yaml unless --config); "
        "buy & hold: equal weight, fully invested, same span. Each part is replayed from a flat account.",
    )


def fold_lines(wf: WalkForward) -> list[str]:
    """The fold table as aligned text, then the verdicts."""
    header = tuple(c.split(" (")[0] for c in fold_columns(wf.objective))
    rows = [header, *fold_rows(wf)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) if i in (1, 2) else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    return [*lines, *wf.verdicts]


def importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """(importance per parameter, a note); empty with the reason when there are too few scored trials."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, f"too few completed trials for importances ({len(complete)}; at least {MIN_TRIALS_FOR_IMPORTANCE})"
    if len({t.value for t in complete}) < 2:
        return {}, "every completed trial scored the same: no parameter made a difference here"
    try:
        # Optuna's default evaluator (PED-ANOVA): no scikit-learn needed, deterministic for a given study.
        found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ImportError) as exc:
        return {}, f"importances could not be computed: {exc}"
    return dict(found), "Optuna's PED-ANOVA over the completed trials (penalized ones included); they sum to 1"


def _history(study: optuna.Study) -> tuple[list[int], list[float], list[float]]:
    numbers, values, best = [], [], []
    top = float("-inf")
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state is not optuna.trial.TrialState.COMPLETE or t.value is None or t.value <= PENALTY:
            continue
        top = max(top, t.value)
        numbers.append(t.number)
        values.append(t.value)
        best.append(top)
    return numbers, values, best


def trials_table(rows: Sequence[Mapping[str, Any]], paths: Sequence[str]) -> Table:
    scored = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    scored.sort(key=lambda r: r["value"], reverse=True)
    columns = ("trial", "in-sample objective", "trades", *paths)
    body = [
        (
            str(r["number"]),
            number_text(r["in_sample_objective"], "{:.3f}"),
            cell(r["trades"]),
            *(cell(r[p]) for p in paths),
        )
        for r in scored[:TOP_TRIALS]
    ]
    return Table(columns, body, caption=f"the {TOP_TRIALS} best completed trials by their (penalized) score")


def write_report(
    out: Path,
    *,
    study: optuna.Study,
    wf: WalkForward,
    overview: Sequence[tuple[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    paths: Sequence[str],
    best_yaml: str,
) -> None:
    """report.html plus the three charts it inlines (history.png, importances.png, equity.png) in `out`."""
    numbers, values, best = _history(study)
    history_chart(out / "history.png", numbers, values, best, f"Optimisation history ({wf.objective}, in-sample)")
    found, importance_note = importances(study)
    if found:
        importance_chart(out / "importances.png", found)
    shaded = [(p.period.start, p.period.end) for p in wf.parts if p.part == OUT_OF_SAMPLE]
    curves = {
        "best trial": ([t for t, _ in wf.best_curve], [v for _, v in wf.best_curve]),
        "defaults": ([t for t, _ in wf.default_curve], [v for _, v in wf.default_curve]),
    }
    curves_chart(out / "equity.png", curves, shaded, "Equity over the whole period: best trial vs defaults")
    page = render_page(
        "optimize.html.j2",
        overview=pairs_table(overview),
        verdicts=wf.verdicts,
        worse=wf.out_of_sample_worse,
        folds=fold_table(wf),
        equity_png=png_data_uri(out / "equity.png"),
        history_png=png_data_uri(out / "history.png") if numbers else None,
        importances=Table(("setting", "importance"), [(k, f"{v:.3f}") for k, v in found.items()]),
        importance_note=importance_note,
        importances_png=png_data_uri(out / "importances.png") if found else None,
        trials=trials_table(rows, paths),
        best_yaml=best_yaml,
    )
    (out / "report.html").write_text(page, encoding="utf-8")
