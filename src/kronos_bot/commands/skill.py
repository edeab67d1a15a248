"""`kronos-bot skill`: how good the live forecasts are (per symbol and overall), and each gate's worth.

kronos-bot skill                                   # the trader's journal, 7 days / 30 days / all
kronos-bot skill --symbol BTC/USD --since 14d
kronos-bot skill --json                            # {"overall": {...}, "by_symbol": {...}}
kronos-bot skill --gates                           # what each veto saved or cost (shadow outcomes)
kronos-bot skill --journal var/backtest/journal.sqlite   # a backtest's journal: the same numbers
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kronos_bot.commands.decisions import parse_since
from kronos_bot.commands.failures import InputError
from kronos_bot.config import Settings
from kronos_bot.domain import symbol_argument

NAME = "skill"
HELP = "score the journaled forecasts (hit rate, Brier, CRPS vs no-change) and each gate's worth (--gates)"
LOGS_TO_STDERR = True
EXAMPLE = "example: kronos-bot skill --symbol btc --since 14d   (or: kronos-bot skill --gates --json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--journal", metavar="PATH", help="journal file (default: journal.path of the config)")
    parser.add_argument(
        "--since", type=parse_since, metavar="TIME", help="only forecasts made since: ISO time (UTC) or age (14d)"
    )
    parser.add_argument(
        "--symbol", type=symbol_argument, metavar="SYMBOL", help="only this symbol, any case: BTC/USD, btc, btcusd"
    )
    parser.add_argument("--gates", action="store_true", help="per blocking reason: what the skipped entries did")
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.commands.journal_reader import journal_missing, reading_journal
    from kronos_bot.skill.summary import overall_line, pit_text
    from kronos_bot.trader.skill_keeper import gate_document, skill_document

    if args.journal and not Path(args.journal).exists():
        raise InputError(f"--journal {args.journal}: no such file")
    path = args.journal or settings.journal.path
    if journal_missing(path):
        return 0
    with reading_journal(path) as journal:
        data = gate_document(journal, args.since) if args.gates else skill_document(journal, args.since, args.symbol)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    if args.gates:
        _print_gates(data)
        return 0
    counts = data.get("counts", {})
    print(
        f"forecasts: {counts.get('scored', 0)} scored, {counts.get('pending', 0)} pending, "
        f"{counts.get('unscorable', 0)} unscorable"
    )
    groups = [("overall", data["overall"]), *data["by_symbol"].items()]
    for name, group in groups:
        print(f"\n{name}")
        for window in ("7d", "30d", "all"):
            print(f"  {window:>3}  {overall_line(group['windows'][window])}")
        if group["n"]:
            print("  PIT histogram (flat = calibrated; U-shaped = bands too narrow):")
            for line in pit_text(group["pit_histogram"]):
                print("  " + line)
    print("\nBSS / CRPSS > 0: better than the no-change random walk; lower Brier and CRPS are better.")
    return 0


def _print_gates(data: dict[str, Any]) -> None:
    if not data:
        print("no shadow outcomes yet (each decision's is known once the configured exits would have closed it)")
        return
    print(f"{'reason / tier':<28} {'count':>6} {'mean return %':>14} {'win rate':>9}")
    for key, row in data.items():
        print(f"{key:<28} {row['count']:>6} {row['mean_return_pct']:>14.3f} {row['win_rate']:>9.1%}")
    print("A blocking reason with a negative mean kept the bot out of losers (the veto saved money);")
    print("a positive mean means it kept the bot out of winners. Returns are after fees and slippage.")
