"""The `kronos-bot` entry point: global options, then one sub-command from COMMAND_MODULES.

Sub-commands are listed in exactly one place (below) and imported lazily by name, so `kronos-bot --help`
and the trader's commands never import torch; only commands that need the model import it, inside main.
Configuration is loaded and validated before any command runs: a bad config prints the file, key and
reason and exits 2 with nothing started. The known failures of every command (no model, no market data,
broker or journal unusable, bad input) end here as one line on stderr and a documented exit code
(`kronos_bot.commands.failures`); a traceback only with --log-level DEBUG.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from kronos_bot import __version__
from kronos_bot.commands.failures import EXIT_OK, EXIT_USAGE, describe_failure

# name -> module; the order is the order shown in --help.
COMMAND_MODULES: dict[str, str] = {
    "run": "kronos_bot.commands.run",
    "once": "kronos_bot.commands.once",
    "status": "kronos_bot.commands.status",
    "decisions": "kronos_bot.commands.decisions",
    "logs": "kronos_bot.commands.logs",
    "profit": "kronos_bot.commands.profit",
    "skill": "kronos_bot.commands.skill",
    "forecaster": "kronos_bot.commands.forecaster",
    "forecast": "kronos_bot.commands.forecast",
    "download-model": "kronos_bot.commands.download_model",
    "backtest": "kronos_bot.commands.backtest",
    "evaluate": "kronos_bot.commands.evaluate",
    "optimize": "kronos_bot.commands.optimize",
    "config": "kronos_bot.commands.config_cmd",
    "notify-test": "kronos_bot.commands.notify_test",
}

EXIT_CONFIG_ERROR = EXIT_USAGE


def _command_modules() -> dict[str, ModuleType]:
    """Import each registered command module (cheap: command modules import heavy things inside main)."""
    return {name: importlib.import_module(path) for name, path in COMMAND_MODULES.items()}


class _LayeringSubParsersAction(argparse._SubParsersAction):
    """Sub-commands whose --config files are added after the ones given before the sub-command.

    argparse parses a sub-command into a fresh namespace and copies it over the parent's, so a repeated
    (append) option given on both sides of the sub-command would keep only the sub-command's list. The
    files are layers merged in order, so losing the earlier ones would silently validate something else:
    this keeps both, in command-line order (before the sub-command first, then after it, at any depth).
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        before = getattr(namespace, "config", None)
        super().__call__(parser, namespace, values, option_string)
        after = getattr(namespace, "config", None)
        if before and after is not before:
            namespace.config = [*before, *(after or [])]


def add_common_options(parser: argparse.ArgumentParser, suppress_defaults: bool = True) -> None:
    """--config / --log-format / --log-level, accepted before or after any (sub-)command.

    --config may be repeated: the files are merged in command-line order (see config.load_settings), and
    the sub-commands this parser gets later keep the files given before them (_LayeringSubParsersAction).
    """
    default = argparse.SUPPRESS if suppress_defaults else None
    parser.register("action", "parsers", _LayeringSubParsersAction)
    parser.add_argument(
        "--config",
        metavar="PATH",
        action="append",
        default=default,
        help="YAML config file; repeat to layer overlays, later files overriding earlier ones key by key "
        "(default: $KRONOS_BOT_CONFIG, else config/bot.yaml)",
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
        # Every command's --help ends with a one-line example (its module's EXAMPLE), kept on one line.
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog=getattr(module, "EXAMPLE", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common_options(sub)
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = str(args.command)

    from kronos_bot.config import SECRET_FIELDS, ConfigError, Settings, load_settings
    from kronos_bot.logs import configure_logging, register_secrets

    settings: Settings | None = None
    if getattr(args._module, "NEEDS_CONFIG", True):
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            return report_failure(exc, command, debug=args.log_level == "DEBUG")
        # Every secret value is masked wherever it appears in a log line; each notify URL on its own too.
        register_secrets([*(getattr(settings, name) for name in SECRET_FIELDS), *settings.notify_url_list()])
    level = args.log_level or (settings.logging.level if settings else "INFO")
    configure_logging(
        level=level,
        fmt=args.log_format or (settings.logging.format if settings else "auto"),
        stream=sys.stderr if getattr(args._module, "LOGS_TO_STDERR", False) else sys.stdout,
    )
    try:
        return int(args._module.main(args, settings) or EXIT_OK)
    except BrokenPipeError:
        # `kronos-bot skill | head`: the reader is gone, which is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        return report_failure(exc, command, debug=level == "DEBUG")


def report_failure(exc: BaseException, command: str, *, debug: bool) -> int:
    """Print a known failure as one message on stderr (after its traceback with DEBUG) and return its code.

    An exception that is not a known failure is a bug: it is re-raised, traceback and all.
    """
    failure = describe_failure(exc, command)
    if failure is None:
        raise exc
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(failure.message, file=sys.stderr, flush=True)
    return failure.code


if __name__ == "__main__":
    sys.exit(main())
