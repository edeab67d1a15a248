"""The `kronos-bot` entry point: global options, then one sub-command from COMMAND_MODULES.

Sub-commands are listed in exactly one place (below) and imported lazily by name, so `kronos-bot --help`
and the trader's commands never import torch; only commands that need the model import it, inside main.
Configuration is loaded and validated before any command runs: a bad config prints the file, key and
reason and exits 2 with nothing started.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from kronos_bot import __version__

# name -> module; the order is the order shown in --help.
COMMAND_MODULES: dict[str, str] = {
    "run": "kronos_bot.commands.run",
    "once": "kronos_bot.commands.once",
    "status": "kronos_bot.commands.status",
    "decisions": "kronos_bot.commands.decisions",
    "profit": "kronos_bot.commands.profit",
    "skill": "kronos_bot.commands.skill",
    "forecaster": "kronos_bot.commands.forecaster",
    "forecast": "kronos_bot.commands.forecast",
    "download-model": "kronos_bot.commands.download_model",
    "backtest": "kronos_bot.commands.backtest",
    "evaluate": "kronos_bot.commands.evaluate",
    "config": "kronos_bot.commands.config_cmd",
    "notify-test": "kronos_bot.commands.notify_test",
}

EXIT_CONFIG_ERROR = 2


def _command_modules() -> dict[str, ModuleType]:
    """Import each registered command module (cheap: command modules import heavy things inside main)."""
    return {name: importlib.import_module(path) for name, path in COMMAND_MODULES.items()}


def add_common_options(parser: argparse.ArgumentParser, suppress_defaults: bool = True) -> None:
    """--config / --log-format / --log-level, accepted before or after any (sub-)command."""
    default = argparse.SUPPRESS if suppress_defaults else None
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="YAML config file (default: $KRONOS_BOT_CONFIG, else config/bot.yaml)",
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default=default,
        help="log renderer (default from config: auto = console on a TTY, else JSON lines)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=default,
        help="minimum log level (default from config)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kronos-bot",
        description="Crypto paper-trading bot: news sentiment + technical indicators + Kronos forecasts.",
    )
    parser.add_argument("--version", action="version", version=f"kronos-bot {__version__}")
    add_common_options(parser, suppress_defaults=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _command_modules().items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        add_common_options(sub)
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    from kronos_bot.config import SECRET_FIELDS, ConfigError, load_settings
    from kronos_bot.logs import configure_logging, register_secrets

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"kronos-bot: {exc}", file=sys.stderr)
        print("kronos-bot: refusing to start; fix the configuration and try again.", file=sys.stderr)
        return EXIT_CONFIG_ERROR

    # Every secret value is masked wherever it appears in a log line; each notify URL on its own too.
    register_secrets([*(getattr(settings, name) for name in SECRET_FIELDS), *settings.notify_url_list()])
    configure_logging(
        level=args.log_level or settings.logging.level,
        fmt=args.log_format or settings.logging.format,
        stream=sys.stderr if getattr(args._module, "LOGS_TO_STDERR", False) else sys.stdout,
    )
    try:
        return int(args._module.main(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `kronos-bot skill | head`: the reader is gone, which is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
