"""`kronos-bot run`: the trader daemon (what kronos-trader.service starts)."""

from __future__ import annotations

import argparse

from kronos_bot.config import Settings

NAME = "run"
HELP = "run the trader daemon: entry cycle every 15 min, exit monitor every 60 s (dry run without Alpaca keys)"
EXAMPLE = "example: kronos-bot run --config config/bot.yaml --log-format console"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own: everything comes from the config (see config/bot.yaml)."""


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.commands.trader_start import trader_parts
    from kronos_bot.trader.daemon import TraderDaemon

    return TraderDaemon(trader_parts(settings, args)).run()
