"""`kronos-bot run`: the trader daemon (what kronos-trader.service starts)."""

from __future__ import annotations

import argparse
import sys

from kronos_bot.cli import EXIT_CONFIG_ERROR
from kronos_bot.config import START_REFUSED, ConfigError, Settings, check_journal_path

NAME = "run"
HELP = "run the trader daemon: entry cycle every 15 min, exit monitor every 60 s (dry run without Alpaca keys)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own: everything comes from the config (see config/bot.yaml)."""


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.broker.alpaca import LiveTradingRefused
    from kronos_bot.logs import get_logger
    from kronos_bot.trader.daemon import TraderDaemon, build_trader_parts

    log = get_logger("kronos_bot.run")
    try:  # before build_trader_parts opens it: a plain refusal instead of a sqlite traceback
        check_journal_path(settings, getattr(args, "config", None))
    except ConfigError as exc:
        print(f"kronos-bot: {exc}\nkronos-bot: {START_REFUSED}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        parts = build_trader_parts(settings)
    except LiveTradingRefused as exc:
        log.error("trader.refused", reason=str(exc))
        return 2
    return TraderDaemon(parts).run()
