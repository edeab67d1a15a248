#!/usr/bin/env python3
"""Turn the trader's JSON log into a readable decision table.

journalctl -u kronos-trader -o cat -f | scripts/decision_table.py
journalctl -u kronos-trader -o cat --since today | scripts/decision_table.py --decisions-only
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from kronos_bot.trader.decision_table import parse_log_lines, render_events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="log file (default: standard input)")
    parser.add_argument("--decisions-only", action="store_true", help="hide order/position/cycle lines")
    parser.add_argument("--symbol", help="only this symbol, e.g. BTC/USD")
    args = parser.parse_args()
    if args.file:
        with open(args.file, encoding="utf-8") as stream:
            return print_table(stream, args)
    return print_table(sys.stdin, args)


def print_table(stream: TextIO, args: argparse.Namespace) -> int:
    events = (e for e in parse_log_lines(stream) if not args.symbol or e.get("symbol") in (None, args.symbol))
    try:
        for line in render_events(events, include_notable=not args.decisions_only):
            print(line, flush=True)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
