"""`kronos-bot once`: one entry cycle now, printed as a decision table (orders only with --trade)."""

from __future__ import annotations

import argparse
import json
import sys

from kronos_bot.cli import EXIT_CONFIG_ERROR
from kronos_bot.config import START_REFUSED, ConfigError, Settings, check_journal_path

NAME = "once"
HELP = "run one entry cycle now and print the decisions (places orders only with --trade)"
LOGS_TO_STDERR = True  # stdout is for the table / JSON


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trade", action="store_true", help="also place the orders the engine decides")
    parser.add_argument("--json", action="store_true", help="print the decision events as JSON")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.broker.alpaca import LiveTradingRefused
    from kronos_bot.logs import get_logger
    from kronos_bot.trader.daemon import build_trader_parts
    from kronos_bot.trader.decision_table import render_events

    log = get_logger("kronos_bot.once")
    # With or without --trade: the cycle journals its decisions, so build_trader_parts always opens the journal.
    try:
        check_journal_path(settings, getattr(args, "config", None))
    except ConfigError as exc:
        print(f"kronos-bot: {exc}\nkronos-bot: {START_REFUSED}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        parts = build_trader_parts(settings)
    except LiveTradingRefused as exc:
        log.error("trader.refused", reason=str(exc))
        return 2
    try:
        report = parts.cycle.run(trade=args.trade)
    finally:
        parts.close()
    if args.json:
        print(
            json.dumps(
                {
                    "cycle_id": report.cycle_id,
                    "status": report.status,
                    "decisions": report.events,
                    "entries": [{"symbol": e.symbol, "status": e.status, "reason": e.reason} for e in report.entries],
                    "durations": report.durations,
                },
                indent=2,
                default=str,
            )
        )
    else:
        for line in render_events(report.events, include_notable=False):
            print(line)
        for entry in report.entries:
            print(f"entry {entry.symbol}: {entry.status} {entry.reason}".rstrip())
        if not args.trade and any(e["action"] == "ENTER" for e in report.events):
            print("(no orders placed: run with --trade to place them)")
    return 0 if report.status == "ok" else 1
