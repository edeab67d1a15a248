"""`kronos-bot optimize`: search config thresholds with Optuna, validated walk-forward on cached forecasts.

Everything the run needs is checked before the first forecast (the search space, the folds against the
period, the storage URL), so bad input costs nothing and leaves nothing behind. The forecasts are
computed once (or read from --cache-dir) with a progress bar; the trials then only replay them.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from kronos_bot.commands.failures import InputError
from kronos_bot.config import Settings

NAME = "optimize"
HELP = (
    "search the config's thresholds with Optuna on cached forecasts, walk-forward: scored in-sample, "
    "replayed out-of-sample; write best.yaml, trials.csv and a report"
)
LOGS_TO_STDERR = True  # stdout is for the fold table
EXAMPLE = (
    "example: kronos-bot optimize --data tests/fixtures/bars --from 2024-12-14 --to 2024-12-31 --trials 50 "
    "--folds 2 --out out/opt"
)
DEFAULT_OUT = "var/optimize"
DEFAULT_SPACE = "config/optimize.yaml"
DEFAULT_TRIALS = 100
DEFAULT_FOLDS = 3
DEFAULT_MIN_TRADES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kronos_bot.backtest.inputs import add_cost_arguments, add_data_arguments, add_model_arguments
    from kronos_bot.backtest.optimize.study import OBJECTIVES

    add_data_arguments(parser)
    add_model_arguments(parser)
    add_cost_arguments(parser)
    parser.add_argument(
        "--trials",
        type=int,
        default=DEFAULT_TRIALS,
        metavar="COUNT",
        help=f"trials of the study in all (every worker and process joining it together; default {DEFAULT_TRIALS})",
    )
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="COUNT", help="worker processes on this machine (default 1)"
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage (default sqlite:///OUT/study.db); with a PostgreSQL/MySQL URL, processes on several "
        "machines given the same --study join one study (they need the same --cache-dir: a shared folder)",
    )
    parser.add_argument(
        "--study", metavar="NAME", help="study name to create or join (default: optimize-<UTC time of the run>)"
    )
    parser.add_argument(
        "--objective", choices=sorted(OBJECTIVES), default="sharpe", help="what the study maximizes (default sharpe)"
    )
    parser.add_argument(
        "--space",
        default=DEFAULT_SPACE,
        metavar="FILE",
        help=f"search space YAML: config key path -> range (default {DEFAULT_SPACE})",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=DEFAULT_FOLDS,
        metavar="COUNT",
        help=f"walk-forward folds (default {DEFAULT_FOLDS})",
    )
    parser.add_argument(
        "--min-trades",
        type=int,
        default=DEFAULT_MIN_TRADES,
        metavar="COUNT",
        help=f"closed trades over the in-sample parts below which a trial is penalized (default {DEFAULT_MIN_TRADES})",
    )
    parser.add_argument(
        "--sampler-seed", type=int, metavar="SEED", help="seed of the TPE sampler (default: the sampling --seed)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default {DEFAULT_OUT})")


def _check_counts(args: argparse.Namespace) -> None:
    for name in ("trials", "jobs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1 (got {getattr(args, name)})")
    if args.min_trades < 0:
        raise ValueError(f"--min-trades must not be negative (got {args.min_trades})")
    if args.timeout is not None and args.timeout <= 0:
        raise ValueError(f"--timeout must be positive (got {args.timeout})")


def _config_names(args: argparse.Namespace) -> str:
    """The --config file(s) given, as they go into `config check` (one or several, in order)."""
    given = getattr(args, "config", None)
    if not given:
        return "config/bot.yaml"
    return " --config ".join(given) if isinstance(given, list) else str(given)


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.backtest import inputs
    from kronos_bot.backtest.optimize import overlay, results, study, walkforward, workers
    from kronos_bot.backtest.optimize.folds import walk_forward
    from kronos_bot.backtest.optimize.report import fold_lines
    from kronos_bot.backtest.optimize.space import load_space
    from kronos_bot.backtest.trials import prepare_trials
    from kronos_bot.logs import configure_logging

    configure_logging(
        level=args.log_level or "WARNING", fmt=args.log_format or settings.logging.format, stream=sys.stderr
    )
    out = Path(args.out)
    try:
        _check_counts(args)
        run_settings = inputs.run_settings_of(args, settings)
        space = load_space(args.space)
        study.refuse_fixed_inputs(run_settings, space)
        store = inputs.load_store(args, run_settings, list(run_settings.symbols))
        period = inputs.resolve_period(args, store, run_settings)
        folds = walk_forward(period, args.folds)
        storage = args.storage or f"sqlite:///{(out / 'study.db').as_posix()}"
        if not args.storage:
            out.mkdir(parents=True, exist_ok=True)
        study.open_storage(storage)  # a URL that does not connect fails here, before any forecast
    except (ValueError, OSError) as exc:  # the arguments, the space file, the period, the storage
        raise InputError(str(exc)) from exc
    seed = args.sampler_seed if args.sampler_seed is not None else run_settings.gates.kronos.seed
    plan = study.StudyPlan(
        storage=storage,
        name=args.study or f"optimize-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        space=space,
        folds=tuple(folds),
        objective=args.objective,
        min_trades=args.min_trades,
        seed=seed,
        settings=run_settings,
    )
    # The forecasts, once: the (lazy) model is built only when one is missing from the cache.
    with inputs.model_run(args, run_settings, "forecasts") as (forecaster, cache, update):
        data = prepare_trials(
            run_settings,
            store,
            period,
            forecaster=forecaster,
            cache=cache,
            progress=update,
            batch_hours=args.batch_hours,
        )
    remaining = max(0, args.trials - study.counted_trials(study.create_study(plan)))
    update, close = inputs.progress_callback(args, "trials")
    started = time.perf_counter()
    try:
        if args.jobs == 1:
            ran = study.optimize(
                plan,
                data,
                trials=remaining,
                total=args.trials,
                timeout=args.timeout,
                on_trial=lambda n: update(n, args.trials, ""),
            )
        else:
            # The parsed values only (not the command's module): what a worker needs to reload the bars.
            plain = argparse.Namespace(**{k: v for k, v in vars(args).items() if not k.startswith("_")})
            tasks = [
                workers.WorkerTask(plan, plain, period, share, args.trials, args.timeout, worker=i)
                for i, share in enumerate(workers.shares(remaining, args.jobs))
                if share > 0
            ]
            ran = workers.run_workers(tasks, lambda n: update(n, args.trials, "")) if tasks else 0
    finally:
        close()
    seconds = time.perf_counter() - started
    finished = study.create_study(plan)
    try:
        best = results.best_trial(finished)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    best_settings = overlay.apply(run_settings, study.clean(best.params))
    check = walkforward.walk_forward_check(data, best_settings, run_settings, folds, args.objective)
    outcome = results.StudyOutcome(plan, finished, best, check, ran, seconds)
    written = results.write_outcome(out, outcome, _config_names(args))
    print(f"optimize {period.label()}, {len(folds)} folds, objective {args.objective}, study {plan.name}")
    print(f"{ran} trials in {seconds:.1f} s ({outcome.trials_per_second:.2f} trials/s); best trial #{best.number}")
    if best.value is None or best.value <= study.PENALTY:
        print(
            f"no trial reached --min-trades {args.min_trades} with a defined {args.objective}: "
            "the best is a penalized one"
        )
    for line in fold_lines(check):
        print(line)
    print(f"wrote {', '.join(p.name for p in written)} in {out}")
    print(f"report: {out / 'report.html'}")
    return 0
