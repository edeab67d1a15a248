"""How the reading commands (status, decisions, profit, skill) open the journal, alike.

Why here: each of them must say the same thing about a journal that does not exist yet (a note, exit 0:
the trader has simply not run) and about one SQLite refuses (corrupt, locked, read-only, newer schema:
`JournalUnusable`, which `kronos_bot.cli.main` reports as one line and exit 6).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from kronos_bot.commands.failures import JournalUnusable

if TYPE_CHECKING:
    from kronos_bot.trader.journal import Journal


def journal_missing(path: str | Path) -> bool:
    """True (after printing a note) when there is no journal at `path`: nothing to read yet, not an error."""
    if Path(path).exists():
        return False
    print(f"no journal at {path} yet (the trader has not run with this config)")
    return True


@contextmanager
def reading_journal(path: str | Path) -> Iterator[Journal]:
    """The journal at `path`, closed afterwards; SQLite's refusals (opening or reading) as JournalUnusable."""
    from kronos_bot.trader.journal import Journal, JournalError

    refusals = (sqlite3.Error, JournalError, PermissionError)
    try:
        journal = Journal(path)
    except refusals as exc:
        raise JournalUnusable(path, exc) from exc
    try:
        yield journal
    except refusals as exc:
        raise JournalUnusable(path, exc) from exc
    finally:
        journal.close()
