"""`kronos-bot run`: the trader daemon (what kronos-trader.service starts)."""

from __future__ import annotations

import argparse

from kronos_bot.config import Settings

NAME = "run"
HELP = "run the trader daemon: entry cycle every 15 min, exit monitor every 60 s (dry run without Alpaca keys)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own: everything comes from the config (see config/bot.yaml)."""


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.broker.alpaca import LiveTradingRefused
    from kronos_bot.logs import get_logger
    from kronos_bot.trader import TraderDaemon, build_trader_parts

    log = get_logger("kronos_bot.run")
    try:
        parts = build_trader_parts(settings)
    except LiveTradingRefused as exc:
        log.error("trader.refused", reason=str(exc))
        return 2
    return TraderDaemon(parts).run()
