"""`kronos-bot once`: one entry cycle now, printed as a decision table (orders only with --trade)."""

from __future__ import annotations

import argparse
import json

from kronos_bot.commands.failures import EXIT_FAILED, EXIT_OK
from kronos_bot.config import Settings

NAME = "once"
HELP = "run one entry cycle now and print the decisions (places orders only with --trade)"
LOGS_TO_STDERR = True  # stdout is for the table / JSON
EXAMPLE = "example: kronos-bot once --json   (add --trade to place the orders)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trade", action="store_true", help="also place the orders the engine decides")
    parser.add_argument("--json", action="store_true", help="print the decision events as JSON")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.commands.trader_start import trader_parts
    from kronos_bot.trader.decision_table import render_events

    # With or without --trade: the cycle journals its decisions, so the journal is always opened.
    parts = trader_parts(settings, args)
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
    return EXIT_OK if report.status in ("ok", "partial") else EXIT_FAILED  # failed: no symbol could be judged
