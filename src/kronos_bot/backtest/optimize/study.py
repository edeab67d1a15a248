"""The Optuna study: storage, TPE sampler, and the objective a trial is scored by.

Why these choices:
- Optuna's RDB storage (SQLite by default, PostgreSQL or MySQL for several machines) is its documented
  distributed mode: every process that opens the same study name on the same URL joins the study and
  the storage hands out trial numbers, so nothing of ours coordinates workers.
- TPE with a seed: reproducible on one worker. Worker `i` seeds its sampler with `seed + i`, otherwise
  every worker would propose the same first points.
- The objective is the mean over the folds' in-sample parts (see `folds`). A combination with fewer
  closed trades than `min_trades` over those parts, or whose objective is undefined (no variance, no
  drawdown), scores `PENALTY - shortfall`: below every feasible trial, yet still ordered by how close it
  came, so TPE learns to leave that region. A penalty rather than Optuna's constraints keeps
  `study.best_trial` meaningful for every sampler.
- A combination the settings model refuses (`kronos_only` above `triple_confirmed`, ...) is pruned with
  the reason in its user attributes: TPE learns from it, the study never stops on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from kronos_bot.backtest.optimize import overlay
from kronos_bot.backtest.optimize.folds import Fold
from kronos_bot.backtest.optimize.space import SearchSpace
from kronos_bot.backtest.trials import TrialData, TrialResult, check_trial_settings, run_trial
from kronos_bot.config import Settings

# --objective -> the TrialResult field it maximizes
OBJECTIVES = {"sharpe": "sharpe", "return": "total_return", "calmar": "calmar", "sortino": "sortino"}
PENALTY = -1000.0
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # trials that count towards --trials
FLOAT_DIGITS = 10  # sampled floats are rounded so the value scored is the value written to best.yaml


class StorageError(ValueError):
    """The study's storage URL cannot be opened; the message names it (password hidden) and the cause."""


@dataclass(frozen=True)
class StudyPlan:
    """What every worker needs to join the study and score trials the same way (picklable)."""

    storage: str
    name: str
    space: SearchSpace
    folds: tuple[Fold, ...]
    objective: str
    min_trades: int
    seed: int | None
    settings: Settings  # the run's settings (config + backtest overrides): the defaults of every trial


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL has no password we could find either
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect to (and, if new, initialize) the storage; StorageError when it cannot be used."""
    sqlite = url.startswith("sqlite")
    # SQLite: several local workers write one file; wait for its lock instead of failing at once.
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as exc:  # sqlalchemy's ArgumentError / OperationalError, a missing driver, ...
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(
            f"cannot open the study storage {shown_url(url)}: {cause}; fix: give --storage as "
            "sqlite:///PATH/study.db or postgresql+psycopg://USER:PASSWORD@HOST/DB (a reachable server; "
            "the driver: pip install 'kronos-bot[postgres]')"
        ) from None


def create_study(plan: StudyPlan, worker: int = 0) -> optuna.Study:
    """Create the study, or join it when it exists (several processes, or a resumed run)."""
    seed = None if plan.seed is None else plan.seed + worker
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would bury the fold table
    return optuna.create_study(
        storage=open_storage(plan.storage),
        study_name=plan.name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        load_if_exists=True,
    )


def _other_values(distribution: Any, current: Any) -> list[Any]:
    """Values of `distribution` other than `current` (its ends, or its choices): enough to see whether
    changing the key matters."""
    ends = (
        distribution.choices
        if isinstance(distribution, CategoricalDistribution)
        else (distribution.low, distribution.high)
    )
    return [v for v in ends if v != current]


def refuse_fixed_inputs(settings: Settings, space: SearchSpace) -> None:
    """ValueError naming the first key of `space` that would change the forecasts (or other inputs the
    study computes once): such a key cannot be a trial parameter, and finding out after the forecasts
    were computed would waste them."""
    # check_trial_settings compares against the study's settings only: a stand-in holding them is enough
    # (the real TrialData needs the forecasts this check is meant to run before).
    probe = cast(TrialData, SimpleNamespace(settings=settings))
    for dim in space.dimensions:
        for value in _other_values(dim.distribution, overlay.value_at(settings, dim.path)):
            try:
                changed = overlay.apply(settings, {dim.path: value})
            except overlay.InvalidCombination:
                continue  # refused with the other settings as they are: such trials are pruned, which is fine
            try:
                check_trial_settings(probe, changed)
            except ValueError as exc:
                raise ValueError(f"search space {space.source}: {dim.path}: {exc}") from None
            break


def counted_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def score(result: TrialResult, objective: str) -> float | None:
    value = getattr(result, OBJECTIVES[objective])
    return None if value is None or not math.isfinite(value) else float(value)


def mean_score(results: Sequence[TrialResult], objective: str) -> float | None:
    values = [score(r, objective) for r in results]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


def clean(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as scored: floats rounded (0.30000000000000004 -> 0.3), as `suggest` rounds them."""
    return {k: round(v, FLOAT_DIGITS) if isinstance(v, float) else v for k, v in params.items()}


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One value per dimension, through Optuna's public suggest API (so the storage records them)."""
    params: dict[str, Any] = {}
    for dim in space.dimensions:
        d = dim.distribution
        if isinstance(d, IntDistribution):
            params[dim.path] = trial.suggest_int(dim.path, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, FloatDistribution):
            value = trial.suggest_float(dim.path, d.low, d.high, step=d.step, log=d.log)
            params[dim.path] = value
        elif isinstance(d, CategoricalDistribution):
            params[dim.path] = trial.suggest_categorical(dim.path, list(d.choices))
    return clean(params)


def in_sample(data: TrialData, settings: Settings, folds: Sequence[Fold]) -> list[TrialResult]:
    return [run_trial(data, settings, f.in_sample.start, f.in_sample.end) for f in folds]


def make_objective(plan: StudyPlan, data: TrialData) -> Callable[[optuna.Trial], float]:
    """The function each trial calls: sample, validate (prune when refused), replay in-sample, score."""

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, plan.space)
        try:
            settings = overlay.apply(plan.settings, params)
        except overlay.InvalidCombination as exc:
            trial.set_user_attr("invalid", str(exc))
            raise optuna.TrialPruned(f"refused by the settings model: {exc}") from None
        results = in_sample(data, settings, plan.folds)
        trades = sum(r.trades for r in results)
        value = mean_score(results, plan.objective)
        trial.set_user_attr("trades", trades)
        trial.set_user_attr("in_sample", value)
        trial.set_user_attr("in_sample_return", sum(r.total_return for r in results) / len(results))
        if value is None or trades < plan.min_trades:
            return PENALTY - max(0, plan.min_trades - trades)
        return value

    return objective


def optimize(
    plan: StudyPlan,
    data: TrialData,
    *,
    trials: int,
    total: int,
    timeout: float | None,
    worker: int = 0,
    on_trial: Callable[[int], None] | None = None,
) -> int:
    """Run up to `trials` trials in this process, stopping early once the study counts `total`.

    Returns the number of trials this process ran. `on_trial(counted)` after each one (a progress bar).
    """
    study = create_study(plan, worker)
    ran = 0

    def after_trial(finished: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        nonlocal ran
        ran += 1
        if on_trial is not None:
            on_trial(counted_trials(finished))

    # MaxTrialsCallback: processes on other machines share the study, so the study's count is what stops.
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        optuna.study.MaxTrialsCallback(total, states=COUNTED),
        after_trial,
    ]
    if trials > 0:
        study.optimize(make_objective(plan, data), n_trials=trials, timeout=timeout, callbacks=callbacks)
    return ran
