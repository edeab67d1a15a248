"""`kronos-bot decisions`: the journal's decisions as a readable table, optionally following new ones."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kronos_bot.config import Settings
from kronos_bot.domain import symbol_argument

NAME = "decisions"
HELP = "show recent decisions from the journal as a table (--follow for new ones)"
LOGS_TO_STDERR = True
EXAMPLE = "example: kronos-bot decisions --since 6h --symbol sol --follow"


def parse_since(value: str) -> datetime:
    """An ISO time (UTC if naive) or a relative age like 30m, 6h, 2d."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value and value[-1] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO time or an age like 6h: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=parse_since, metavar="TIME", help="ISO time (UTC) or age such as 30m, 6h, 2d (default 24h)"
    )
    parser.add_argument(
        "--symbol", type=symbol_argument, metavar="SYMBOL", help="only this symbol, any case: BTC/USD, btc, btcusd"
    )
    parser.add_argument("--limit", type=int, default=200, metavar="COUNT", help="most rows shown (default 200)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new decisions")
    parser.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.commands.journal_reader import journal_missing, reading_journal

    if journal_missing(settings.journal.path):
        return 0
    since = args.since or datetime.now(UTC) - timedelta(hours=24)
    with reading_journal(settings.journal.path) as journal:
        _print_decisions(journal, args, since)
    return 0


def _print_decisions(journal: Any, args: argparse.Namespace, since: datetime) -> None:
    """The table, then (with --follow) each new decision as it is journaled, until Ctrl-C."""
    from kronos_bot.trader.decision_table import format_decision, header

    try:
        rows = list(reversed(journal.recent_decisions(since=since, symbol=args.symbol, limit=args.limit)))
        print(header())
        for row in rows:
            print(format_decision(row), flush=True)
        last_id = max((row["id"] for row in rows), default=0)
        while args.follow:
            time.sleep(args.interval)
            fresh = [
                r
                for r in journal.recent_decisions(since=since, symbol=args.symbol, limit=args.limit)
                if r["id"] > last_id
            ]
            for row in reversed(fresh):
                print(format_decision(row), flush=True)
                last_id = max(last_id, row["id"])
    except KeyboardInterrupt:
        pass
