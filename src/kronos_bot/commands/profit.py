"""`kronos-bot profit`: realized P&L of the closed positions in the journal, like Freqtrade's /profit.

kronos-bot profit                         # all closed trades, one row per symbol, and the total
kronos-bot profit --since 7d --by day     # a daily history of the last week (UTC days of the exits)
kronos-bot profit --by reason             # what the trailing stop, stop loss, max hold... earned
kronos-bot profit --json                  # full precision, money as strings

Read-only: the numbers come from the journal's positions (P&L after all fees, as the trader wrote them).
"""

from __future__ import annotations

import argparse
import json

from kronos_bot.commands.decisions import parse_since
from kronos_bot.config import Settings
from kronos_bot.domain import symbol_argument
from kronos_bot.trader.profit import GROUP_KEYS

NAME = "profit"
HELP = "realized P&L of closed trades by symbol, tier, exit reason or day, with win rate, fees and hold time"
LOGS_TO_STDERR = True
EXAMPLE = "example: kronos-bot profit --since 7d --by day --symbol btc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=parse_since, metavar="TIME", help="only exits since: ISO time (UTC) or age such as 6h, 7d"
    )
    parser.add_argument(
        "--by", choices=GROUP_KEYS, default="symbol", help="one row per symbol (default), tier, reason or UTC day"
    )
    parser.add_argument(
        "--symbol", type=symbol_argument, metavar="SYMBOL", help="only this symbol, any case: BTC/USD, btc, btcusd"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (full precision, money as strings)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.commands.journal_reader import journal_missing, reading_journal
    from kronos_bot.trader.profit import profit_report, report_document, table_lines

    if journal_missing(settings.journal.path):
        return 0
    symbol = args.symbol
    with reading_journal(settings.journal.path) as journal:
        positions = journal.closed_positions(since=args.since, symbol=symbol)
    report = profit_report(positions, by=args.by)
    if args.json:
        document = {
            "since": args.since.isoformat() if args.since else None,
            "symbol": symbol,
            **report_document(report),
        }
        print(json.dumps(document, indent=2))
        return 0
    scope = "".join(
        [
            f" for {symbol}" if symbol else "",
            f" since {args.since.isoformat(timespec='minutes')}" if args.since else "",
        ]
    )
    skipped = f" ({report.skipped} closed without a P&L, not counted)" if report.skipped else ""
    if report.total is None:
        print(f"no closed trades{scope} in {settings.journal.path}{skipped}")
        return 0
    print(f"realized P&L by {args.by}{scope}: {report.total.trades} closed trades{skipped}")
    for line in table_lines(report):
        print(line)
    return 0
