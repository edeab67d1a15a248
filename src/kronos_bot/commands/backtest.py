"""`kronos-bot backtest`: replay history through the daemon's gates, engine, sim broker and exits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kronos_bot.commands.failures import InputError
from kronos_bot.config import Settings

NAME = "backtest"
HELP = "replay hourly history through the bot's own gates, engine, simulated broker and exits; write a report"
LOGS_TO_STDERR = True  # stdout is for the summary table
EXAMPLE = "example: kronos-bot backtest --data tests/fixtures/bars --from 2024-12-20 --to 2024-12-31 --out out/bt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kronos_bot.backtest.inputs import add_cost_arguments, add_data_arguments, add_model_arguments

    add_data_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--out", default="var/backtest", metavar="DIR", help="output directory (default: var/backtest)")
    parser.add_argument(
        "--news",
        metavar="FILE",
        help="JSONL news archive (id, created_at, headline, summary, symbols); without it sentiment is NO_DATA",
    )
    add_cost_arguments(parser)
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="also replay with each gate switched off (no_kronos, kronos_alone, technical_alone, "
        "every_hour) from the same signals: ablation.csv and a table in report.html",
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.backtest import inputs
    from kronos_bot.backtest.news_archive import ArchiveNewsProvider, load_news_archive
    from kronos_bot.backtest.report import summary_lines, write_backtest_report
    from kronos_bot.backtest.runner import run_backtest
    from kronos_bot.logs import configure_logging, get_logger

    # Thousands of hourly cycles: only warnings unless a level was asked for explicitly.
    configure_logging(
        level=args.log_level or "WARNING", fmt=args.log_format or settings.logging.format, stream=sys.stderr
    )
    log = get_logger("kronos_bot.backtest")
    try:
        run_settings = inputs.run_settings_of(args, settings)
        store = inputs.load_store(args, run_settings, list(run_settings.symbols))
        period = inputs.resolve_period(args, store, run_settings)
        news = note = None
        if args.news:
            articles = load_news_archive(args.news)
            news = ArchiveNewsProvider(articles)
            note = f"news archive {args.news} ({len(articles)} articles) scored through the live sentiment gate"
    except (ValueError, OSError) as exc:  # the arguments or input files (a missing --data folder, bad dates)
        raise InputError(str(exc)) from exc
    # A model that cannot be loaded and Alpaca history that cannot be fetched end in cli.main (exit 3 / 4).
    with inputs.model_run(args, run_settings, "backtest") as (forecaster, cache, update):
        run = run_backtest(
            run_settings,
            store,
            period,
            forecaster=forecaster,
            cache=cache,
            news=news,
            news_note=note,
            batch_hours=args.batch_hours,
            progress=update,
            journal_out=Path(args.out) / "journal.sqlite",
            ablate=args.ablate,
        )
    summary = write_backtest_report(run, args.out)
    log.info("backtest.done", out=args.out, seconds=summary["seconds"])
    for line in summary_lines(summary, args.out, skill=run.skill, ablation=run.ablation):
        print(line)
    return 0
