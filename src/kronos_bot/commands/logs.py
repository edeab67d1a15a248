"""`kronos-bot logs`: the trader's JSON log lines (journalctl -o cat, or a saved file) as the decision table.

An entry point of the installed package, so `journalctl ... | kronos-bot logs` runs with the bot's own
Python (the old `scripts/decision_table.py` ran the system one, which has no kronos_bot). A watcher must
never lose the stream: undecodable bytes are replaced, lines that are not JSON events are shown marked
(or skipped with --decisions-only), and a closed pipe or Ctrl-C ends quietly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from kronos_bot.commands.failures import EXIT_OK, InputError
from kronos_bot.config import Settings
from kronos_bot.domain import symbol_argument
from kronos_bot.trader.decision_table import format_event, format_text_line, heading_lines, parse_log_line

NAME = "logs"
HELP = "render the trader's JSON log lines (standard input or FILE) as the decision table"
LOGS_TO_STDERR = True  # stdout is for the table
NEEDS_CONFIG = False  # reads only its input: runs anywhere, without --config or access to bot.yaml
EXAMPLE = "example: journalctl -u kronos-trader -o cat -f | kronos-bot logs --follow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE", help="a saved log to read (default: standard input)")
    parser.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="print each row as its line arrives; with FILE, wait for lines appended to it (like tail -f)",
    )
    parser.add_argument(
        "--decisions-only", action="store_true", help="only decision rows: no cycle/order/position or text lines"
    )
    parser.add_argument(
        "--symbol",
        type=symbol_argument,
        metavar="SYMBOL",
        help="only this symbol's rows, any case: BTC/USD, btc, btcusd (events of no symbol stay)",
    )
    parser.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)


def main(args: argparse.Namespace, settings: Settings | None) -> int:
    return show_log(args)


def show_log(args: argparse.Namespace) -> int:
    """The whole command; it needs no configuration, so scripts/decision_table.py runs it without one.

    Raises InputError (exit 2) for a FILE it cannot read, or nothing to read: a terminal on stdin.
    """
    if args.file is None and sys.stdin.isatty():
        raise InputError(f"pipe the log in or give a FILE ({EXAMPLE})")
    try:
        stream = _open_log(args.file)
    except OSError as exc:
        raise InputError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    try:
        lines, events = _print_table(_arriving_lines(stream, args.follow and bool(args.file), args.interval), args)
    except KeyboardInterrupt:  # the way to end --follow: not a failure
        return EXIT_OK
    finally:
        if args.file:
            stream.close()
    if lines and not events:
        hint = "give the trader's log, read with `journalctl -u kronos-trader -o cat`"
        print(f"kronos-bot logs: no JSON log events in {lines} line(s); {hint}", file=sys.stderr)
    return EXIT_OK


def _open_log(path: str | None) -> TextIO:
    """FILE, or standard input; bytes that are not UTF-8 (a cut multi-byte character) become U+FFFD."""
    if path:
        return open(path, encoding="utf-8", errors="replace")  # show_log closes it
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")
    return sys.stdin


def _arriving_lines(stream: TextIO, wait_at_end: bool, interval: float) -> Iterator[str]:
    """Lines as they arrive (never read ahead); with `wait_at_end`, poll the end of a file for appended lines,
    holding back a line still being written until its newline arrives."""
    pending = ""
    while True:
        chunk = stream.readline()
        if chunk.endswith("\n"):
            yield pending + chunk
            pending = ""
            continue
        pending += chunk
        if not wait_at_end:
            if pending:
                yield pending
            return
        time.sleep(interval)


def _print_table(lines: Iterator[str], args: argparse.Namespace) -> tuple[int, int]:
    """Print the legend and header, then one line per shown event; returns (lines read, JSON events)."""
    include_other = not args.decisions_only
    for heading in heading_lines(with_other_lines=include_other):
        print(heading, flush=args.follow)
    read = events = 0
    for line in lines:
        read += 1
        event = parse_log_line(line)
        if event is None:
            if include_other and line.strip():
                print(format_text_line(line), flush=args.follow)
            continue
        events += 1
        if args.symbol and event.get("symbol") not in (None, args.symbol):
            continue
        row = format_event(event, include_notable=include_other)
        if row is not None:
            print(row, flush=args.follow)
    return read, events
