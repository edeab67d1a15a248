#!/usr/bin/env python3
"""Old name of `kronos-bot logs` (the trader's JSON log as a decision table), kept for existing notes.

    journalctl -u kronos-trader -o cat -f | kronos-bot logs --follow

The same arguments and code as the command, without a config file. Run by a python that has no
kronos_bot (the system one), it re-runs itself with the python of the checkout's `.venv` or of an
install's `venv` beside `src/` (scripts/install.sh).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
VENV_PYTHONS = (CHECKOUT / ".venv" / "bin" / "python", CHECKOUT.parent / "venv" / "bin" / "python")


def main() -> int:
    try:
        from kronos_bot.commands import logs
    except ModuleNotFoundError:
        for python in VENV_PYTHONS:
            if python.is_file():
                os.execv(python, [str(python), __file__, *sys.argv[1:]])
        print("decision_table.py: no kronos_bot here; run `kronos-bot logs` of the bot's venv", file=sys.stderr)
        return 1
    from kronos_bot.commands.failures import EXIT_USAGE, InputError

    parser = argparse.ArgumentParser(
        prog="decision_table.py",
        description=logs.HELP,
        epilog=logs.EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logs.add_arguments(parser)
    try:
        return logs.show_log(parser.parse_args())
    except InputError as exc:
        print(f"decision_table.py: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `... | decision_table.py | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
