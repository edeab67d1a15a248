"""What `run`, `once` and `config check` share before a trader starts: the same refusals, worded alike.

A journal path that cannot be written and live trading without both switches refuse to start with a
plain message on stderr and exit 2 -- checked before anything opens the journal, so the user never sees
a sqlite traceback from deep inside start-up.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from kronos_bot.cli import EXIT_CONFIG_ERROR
from kronos_bot.config import START_REFUSED, ConfigError, Settings, check_journal_path

if TYPE_CHECKING:
    from kronos_bot.trader.daemon import TraderParts


def journal_refusal(settings: Settings, args: argparse.Namespace) -> int | None:
    """EXIT_CONFIG_ERROR (after saying why on stderr) when the journal cannot be used, else None."""
    try:
        check_journal_path(settings, getattr(args, "config", None))
    except ConfigError as exc:
        print(f"kronos-bot: {exc}\nkronos-bot: {START_REFUSED}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return None


def trader_parts(settings: Settings, args: argparse.Namespace, logger_name: str) -> TraderParts | int:
    """The trader's parts, or the exit code of a refusal (journal unusable, live trading refused)."""
    from kronos_bot.broker.alpaca import LiveTradingRefused
    from kronos_bot.logs import get_logger
    from kronos_bot.trader.daemon import build_trader_parts

    refused = journal_refusal(settings, args)
    if refused is not None:
        return refused
    try:
        return build_trader_parts(settings)
    except LiveTradingRefused as exc:
        get_logger(logger_name).error("trader.refused", reason=str(exc))
        return EXIT_CONFIG_ERROR
