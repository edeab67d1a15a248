"""`kronos-bot evaluate`: how good are Kronos' forecasts on history, against naive baselines."""

from __future__ import annotations

import argparse
import sys

from kronos_bot.commands.failures import InputError
from kronos_bot.config import Settings

NAME = "evaluate"
HELP = "score Kronos forecasts on history (hit rate, Brier, calibration, MAE) against no-change and drift"
LOGS_TO_STDERR = True  # stdout is for the table
EXAMPLE = "example: kronos-bot evaluate --data tests/fixtures/bars --from 2024-12-20 --samples 16 --out out/eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kronos_bot.backtest.inputs import add_data_arguments, add_model_arguments

    add_data_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--out", default="var/evaluate", metavar="DIR", help="output directory (default: var/evaluate)")
    parser.add_argument("--horizon", type=int, metavar="BARS", help="bars ahead (default: gates.kronos.horizon)")
    parser.add_argument(
        "--stride", type=int, default=1, metavar="HOURS", help="hours between forecast origins (default 1)"
    )
    parser.add_argument(
        "--drift-window", type=int, default=24, metavar="BARS", help="log returns averaged by the drift baseline"
    )
    parser.add_argument(
        "--trend-threshold",
        type=float,
        default=0.3,
        metavar="RATIO",
        help="efficiency ratio at or above which a window counts as trending (default 0.3)",
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.backtest import inputs
    from kronos_bot.backtest.evaluate import EvaluateOptions, run_evaluate
    from kronos_bot.backtest.evaluate_report import table_lines, write_evaluate_report
    from kronos_bot.backtest.options import backtest_settings
    from kronos_bot.logs import configure_logging

    configure_logging(
        level=args.log_level or "WARNING", fmt=args.log_format or settings.logging.format, stream=sys.stderr
    )
    try:
        run_settings = backtest_settings(
            settings, symbols=inputs.symbols_of(args, settings), samples=args.samples, seed=args.seed
        )
        options = EvaluateOptions(
            horizon=args.horizon or run_settings.gates.kronos.horizon,
            stride=args.stride,
            drift_window=args.drift_window,
            trend_threshold=args.trend_threshold,
            batch_hours=args.batch_hours,
        )
        if options.horizon < 1 or options.stride < 1 or options.drift_window < 1:
            raise ValueError("--horizon, --stride and --drift-window must be >= 1")
        store = inputs.load_store(args, run_settings, list(run_settings.symbols))
        period = inputs.resolve_period(args, store, run_settings)
    except (ValueError, OSError) as exc:  # the arguments or input files (a missing --data folder, bad dates)
        raise InputError(str(exc)) from exc
    # A model that cannot be loaded and Alpaca history that cannot be fetched end in cli.main (exit 3 / 4).
    with inputs.model_run(args, run_settings, "evaluate") as (forecaster, cache, update):
        run = run_evaluate(
            run_settings, store, period, forecaster=forecaster, cache=cache, options=options, progress=update
        )
    summary = write_evaluate_report(run, args.out)
    for line in table_lines(summary):
        print(line)
    print(f"written: {args.out}/report.html (open it in a browser), summary.json, skill.json, calibration.png, pit.png")
    return 0
