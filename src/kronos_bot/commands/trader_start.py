"""What `run`, `once` and `config check` share before a trader starts: the same refusals, worded alike.

A journal path that cannot be written refuses to start like any configuration error (exit 2), checked
before anything opens the journal; a journal file SQLite refuses (corrupt, locked, newer schema) is
`JournalUnusable` (exit 6); live trading without both switches is refused with exit 2. All of them end
in `kronos_bot.cli.main` as one message on stderr, so the user never sees a sqlite traceback from deep
inside start-up.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import TYPE_CHECKING

from kronos_bot.commands.failures import JournalUnusable
from kronos_bot.config import Settings, check_journal_path

if TYPE_CHECKING:
    from kronos_bot.trader.daemon import TraderParts


def check_journal(settings: Settings, args: argparse.Namespace) -> None:
    """Raise ConfigError (journal.path: reason) when the journal cannot be created or written."""
    check_journal_path(settings, getattr(args, "config", None))


def trader_parts(settings: Settings, args: argparse.Namespace) -> TraderParts:
    """The trader's parts; the journal file's refusals as JournalUnusable."""
    from kronos_bot.trader.daemon import build_trader_parts
    from kronos_bot.trader.journal import JournalError

    check_journal(settings, args)
    try:
        return build_trader_parts(settings)
    except (sqlite3.Error, JournalError, PermissionError) as exc:
        raise JournalUnusable(settings.journal.path, exc) from exc
