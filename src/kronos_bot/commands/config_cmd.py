"""`kronos-bot config check`: validate the configuration and print it with secrets redacted."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from kronos_bot.cli import add_common_options
from kronos_bot.config import Settings, resolve_config_path

NAME = "config"
HELP = "inspect the configuration (check: validate and print the effective config, secrets redacted)"
EXAMPLE = "example: kronos-bot config check --config config/bot.yaml --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate the config and print the effective values",
        description="validate the config and print the effective values",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of YAML")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.commands.trader_start import check_journal

    # "config OK" must mean `run` will start: the journal path is checked as run and once check it.
    check_journal(settings, args)
    data = settings.redacted()
    source = resolve_config_path(args.config)
    if args.json:
        print(json.dumps({"config_file": str(source), "config": data, "fingerprint": settings.fingerprint()}, indent=2))
    else:
        print(f"# effective configuration: {source} + environment (secrets redacted)")
        print(f"# fingerprint: {settings.fingerprint()}  broker: {settings.effective_broker()}")
        print(yaml.safe_dump(data, sort_keys=False), end="")
    print("config OK", file=sys.stderr)
    return 0
