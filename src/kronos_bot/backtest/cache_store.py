"""One SQLite file of cached text values, addressed by (kind, namespace, key).

Why SQLite and not one file per entry: a 6-month, 4-symbol run makes ~17,600 forecasts; that many small
files are slow to list and to copy, while one indexed table loads a whole namespace in one query. The
namespace holds what invalidates a whole set at once (model fingerprint + sampling settings, or a config
section + the source code of the function whose results are memoized); the key is one entry.

Writes are buffered and committed by `flush()` (the runner flushes every few dozen hours and when it
stops, also on Ctrl-C), so an interrupted cold run keeps what it computed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

SCHEMA = """CREATE TABLE IF NOT EXISTS cache (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, key)
) WITHOUT ROWID"""


class CacheStore:
    """Cached values on disk (`path`) or in memory (`":memory:"`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)
        self._conn.commit()
        self._pending: list[tuple[str, str, str, str]] = []

    @classmethod
    def in_dir(cls, directory: str | Path) -> CacheStore:
        return cls(Path(directory) / "cache.sqlite")

    def load(self, kind: str, namespace: str) -> dict[str, str]:
        """Every key -> value of one namespace (one query; callers parse values lazily)."""
        rows = self._conn.execute("SELECT key, value FROM cache WHERE kind = ? AND namespace = ?", (kind, namespace))
        return dict(rows.fetchall())

    def put(self, kind: str, namespace: str, key: str, value: str) -> None:
        self._pending.append((kind, namespace, key, value))

    def put_many(self, kind: str, namespace: str, items: Iterable[tuple[str, str]]) -> None:
        self._pending.extend((kind, namespace, k, v) for k, v in items)

    def flush(self) -> int:
        """Commit buffered writes; returns how many."""
        if not self._pending:
            return 0
        count = len(self._pending)
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", self._pending)
        self._pending.clear()
        return count

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0])
        return int(self._conn.execute("SELECT COUNT(*) FROM cache WHERE kind = ?", (kind,)).fetchone()[0])

    def close(self) -> None:
        self.flush()
        self._conn.close()

    def __enter__(self) -> CacheStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
