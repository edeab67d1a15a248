"""`kronos-bot config check`: validate the configuration and print it with secrets redacted."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from kronos_bot.cli import add_common_options
from kronos_bot.config import Settings, config_source_label, resolve_config_paths

NAME = "config"
HELP = "inspect the configuration (check: validate and print the effective config, secrets redacted)"
EXAMPLE = "example: kronos-bot config check --config config/bot.yaml --config out/best.yaml --json"


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
    # The files actually merged, in order: layering is only trustworthy if the user can see what was layered.
    files = [str(path) for path in settings.config_files or resolve_config_paths(args.config)]
    if args.json:
        # "config_file" (the base) stays for scripts written before overlays; "config_files" is the full list.
        summary = {"config_file": files[0], "config_files": files, "config": data}
        print(json.dumps({**summary, "fingerprint": settings.fingerprint()}, indent=2))
    else:
        print(f"# effective configuration: {config_source_label(files)} + environment (secrets redacted)")
        if len(files) > 1:
            print("# config files merged in this order (later ones override earlier ones key by key):")
            for number, name in enumerate(files, start=1):
                print(f"#   {number}. {name}")
        print(f"# fingerprint: {settings.fingerprint()}  broker: {settings.effective_broker()}")
        print(yaml.safe_dump(data, sort_keys=False), end="")
    print("config OK", file=sys.stderr)
    return 0
