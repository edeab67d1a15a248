"""The SQLite journal: the bot's memory across restarts. This module owns the bot's SQL but the sim broker's.

Why SQLite: one file, transactional, survives `systemctl restart` and crashes; WAL lets the CLI read
(`kronos-bot decisions ...`) while the daemon writes. `synchronous=FULL` because an order intent must
be on disk before the request that it describes goes out (a crash between submit and record then
loses nothing: reconciliation finds the intent and asks the broker by client_order_id).

Tables: decisions (every gate number, config fingerprint, model revision), orders (intent first, then
updated), positions (entry, HWM, stop, backstop, exit, fees, P&L), forecasts (cache), cycles (timings),
and the simulated broker's account, positions and orders (one file, one schema version: the migrations
are here, the sim tables' SQL is in `broker.sim_store`, which uses this connection and its converters).
Money and quantities are stored as decimal TEXT (exact), times as ISO-8601 UTC TEXT.

Thread safety: APScheduler runs the entry cycle and the exit monitor in worker threads; the journal keeps
one connection guarded by a re-entrant lock, and `transaction()` groups statements atomically.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from kronos_bot.broker.base import OrderResult, OrderSide, OrderType
from kronos_bot.domain import Decision, GateResults
from kronos_bot.trader.journal_schema import MIGRATIONS, SCHEMA_VERSION
from kronos_bot.trader.records import (
    ORDER_INTENT,
    PENDING_ORDER_STATES,
    OrderRecord,
    PositionRecord,
    decode_time,
    encode_decimal,
    encode_time,
    record_of,
    utcnow,
)
from kronos_bot.trader.stops import StopState

# Entry orders that filled but own no position (see `Journal.filled_entries_without_position`).
FILLED_ENTRIES_WITHOUT_POSITION = """
    SELECT o.* FROM orders o LEFT JOIN positions p ON p.entry_client_order_id = o.client_order_id
    WHERE o.purpose = 'entry' AND o.position_id IS NULL AND p.id IS NULL AND o.filled_qty IS NOT NULL
      AND CAST(o.filled_qty AS REAL) > 0 ORDER BY o.id"""


class JournalError(RuntimeError):
    """The journal file cannot be used (newer schema, corrupt...)."""


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return str(obj)
        if isinstance(obj, datetime):
            return obj.isoformat()
        if is_dataclass(obj) and not isinstance(obj, type):
            return asdict(obj)
        return str(obj)

    return json.dumps(value, default=default, sort_keys=True)


class Journal:
    """One SQLite journal file. Open with `Journal(path)`; close with `close()` (or use as a context manager)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    @classmethod
    def from_settings(cls, settings: Any) -> Journal:
        return cls(settings.journal.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def save_copy(self, path: str | Path) -> None:
        """A consistent copy of this journal at `path` (replaced): how a backtest keeps its in-memory one."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        with self._lock, sqlite3.connect(str(target)) as copy:
            self._conn.backup(copy)
        copy.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- plumbing -----

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all (nestable; the outermost one commits)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """One statement in its own transaction (or the caller's): for stores that share this file."""
        return self._exec(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """The rows of one read: for stores that share this file (the simulated broker's)."""
        return self._query(sql, params)

    def _exec(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            if self._depth:
                # Inside this thread's open transaction (the lock is held only by it): a nested
                # `transaction()` would only count its depth, so the statement runs as it is.
                return self._conn.execute(sql, params)
            with self.transaction() as conn:
                return conn.execute(sql, params)

    def _query(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise JournalError(
                    f"{self.path}: schema version {current} is newer than this bot knows ({SCHEMA_VERSION})"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, encode_time(utcnow())))

    def schema_version(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0])

    # ----- cycles -----

    def start_cycle(self, kind: str, started_at: datetime) -> int:
        cur = self._exec("INSERT INTO cycles (kind, started_at) VALUES (?, ?)", (kind, encode_time(started_at)))
        return int(cur.lastrowid or 0)

    def end_cycle(self, cycle_id: int, ended_at: datetime, status: str, stats: Mapping[str, Any] | None = None) -> None:
        row = self._query("SELECT started_at FROM cycles WHERE id = ?", (cycle_id,))
        duration = None
        if row:
            started = decode_time(row[0]["started_at"])
            duration = (ended_at - started).total_seconds() * 1000 if started else None
        self._exec(
            "UPDATE cycles SET ended_at = ?, duration_ms = ?, status = ?, stats = ? WHERE id = ?",
            (encode_time(ended_at), duration, status, _json(dict(stats or {})), cycle_id),
        )

    def set_runtime_state(self, key: str, value: Mapping[str, Any], now: datetime | None = None) -> None:
        """Replace one runtime_state value (see journal_schema, version 5)."""
        self._exec(
            "INSERT INTO runtime_state (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, _json(dict(value)), encode_time(now or utcnow())),
        )

    def runtime_state(self) -> dict[str, dict[str, Any]]:
        """Every runtime_state value, each with its `updated_at`."""
        return {
            r["key"]: {**json.loads(r["value"]), "updated_at": r["updated_at"]}
            for r in self._query("SELECT key, value, updated_at FROM runtime_state")
        }

    def cycle_actions(self, cycle_id: int) -> dict[str, int]:
        """Decisions of one cycle by action (ENTER / SKIP)."""
        rows = self._query(
            "SELECT action, COUNT(*) AS n FROM decisions WHERE cycle_id = ? GROUP BY action", (cycle_id,)
        )
        return {r["action"]: int(r["n"]) for r in rows}

    def recent_cycles(self, limit: int = 20, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM cycles" + (" WHERE kind = ?" if kind else "") + " ORDER BY id DESC LIMIT ?"
        params: tuple[Any, ...] = (kind, limit) if kind else (limit,)
        return [{**dict(r), "stats": json.loads(r["stats"]) if r["stats"] else None} for r in self._query(sql, params)]

    # ----- decisions -----

    def record_decision(
        self,
        decision: Decision,
        gates: GateResults | None = None,
        *,
        cycle_id: int | None = None,
        config_fingerprint: str | None = None,
        model_revision: str | None = None,
    ) -> int:
        """One row per symbol per cycle with every gate number (the gate dataclasses as JSON)."""
        decided_at = decision.decided_at or utcnow()
        tech = gates.technical if gates else None
        sent = gates.sentiment if gates else None
        kr = gates.kronos if gates else None
        cur = self._exec(
            """INSERT INTO decisions (cycle_id, symbol, decided_at, action, tier, notional, reasons, detail,
                   technical_verdict, sentiment_verdict, sentiment_score, kronos_signal, kronos_confidence,
                   technical, sentiment, kronos, config_fingerprint, model_revision)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                cycle_id,
                decision.symbol,
                encode_time(decided_at),
                decision.action.value,
                decision.tier.value if decision.tier else None,
                encode_decimal(decision.notional),
                json.dumps(list(decision.reasons)),
                decision.detail,
                tech.verdict.value if tech else None,
                sent.verdict.value if sent else None,
                sent.score if sent else None,
                kr.signal.value if kr else None,
                kr.confidence if kr else None,
                _json(tech) if tech else None,
                _json(sent) if sent else None,
                _json(kr) if kr else None,
                config_fingerprint,
                model_revision,
            ),
        )
        return int(cur.lastrowid or 0)

    def recent_decisions(
        self,
        *,
        since: datetime | None = None,
        symbol: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first, as plain dicts (gate JSON decoded), for the CLI and tests."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("decided_at >= ?")
            params.append(encode_time(since))
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        sql = "SELECT * FROM decisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY decided_at DESC, id DESC LIMIT ?"
        params.append(limit)
        out = []
        for row in self._query(sql, tuple(params)):
            item = dict(row)
            item["reasons"] = json.loads(item["reasons"])
            item["notional"] = Decimal(item["notional"])
            for key in ("technical", "sentiment", "kronos"):
                item[key] = json.loads(item[key]) if item[key] else None
            out.append(item)
        return out

    # ----- orders -----

    def record_order_intent(
        self,
        *,
        client_order_id: str,
        symbol: str,
        side: OrderSide | str,
        type: OrderType | str,
        purpose: str,
        notional: Decimal | None = None,
        qty: Decimal | None = None,
        stop_price: Decimal | None = None,
        limit_price: Decimal | None = None,
        position_id: int | None = None,
        decision_id: int | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> tuple[OrderRecord, bool]:
        """Write the intent BEFORE the request goes out. Returns (record, created).

        `created` is False when an intent with this client_order_id already exists (a cycle re-run after
        a crash): the caller must then resolve the existing order instead of submitting blindly.
        """
        stamp = encode_time(now or utcnow())
        with self.transaction() as conn:
            existing = conn.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
            if existing is not None:
                return record_of(OrderRecord, existing), False
            conn.execute(
                """INSERT INTO orders (client_order_id, symbol, side, type, purpose, position_id, decision_id,
                       status, notional, qty, stop_price, limit_price, created_at, updated_at, reason)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    client_order_id,
                    symbol,
                    str(side),
                    str(type),
                    purpose,
                    position_id,
                    decision_id,
                    ORDER_INTENT,
                    encode_decimal(notional),
                    encode_decimal(qty),
                    encode_decimal(stop_price),
                    encode_decimal(limit_price),
                    stamp,
                    stamp,
                    reason,
                ),
            )
            row = conn.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
        return record_of(OrderRecord, row), True

    def update_order(self, client_order_id: str, result: OrderResult, now: datetime | None = None) -> OrderRecord:
        """Record what the broker says about the order (status, fills, its id)."""
        with self.transaction() as conn:
            conn.execute(
                """UPDATE orders SET broker_order_id = ?, status = ?, raw_status = ?, filled_qty = ?,
                       filled_avg_price = ?, fee = COALESCE(?, fee), fee_asset = COALESCE(?, fee_asset),
                       stop_price = COALESCE(?, stop_price), limit_price = COALESCE(?, limit_price),
                       qty = COALESCE(qty, ?), filled_at = COALESCE(?, filled_at), error = NULL, updated_at = ?
                   WHERE client_order_id = ?""",
                (
                    result.order_id,
                    result.status.value,
                    result.raw_status,
                    encode_decimal(result.filled_qty),
                    encode_decimal(result.filled_avg_price),
                    encode_decimal(result.fee),
                    result.fee_asset,
                    encode_decimal(result.stop_price),
                    encode_decimal(result.limit_price),
                    encode_decimal(result.qty),
                    encode_time(result.filled_at),
                    encode_time(now or utcnow()),
                    client_order_id,
                ),
            )
            row = conn.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
        if row is None:
            raise KeyError(client_order_id)
        return record_of(OrderRecord, row)

    def mark_order(
        self, client_order_id: str, status: str, error: str | None = None, now: datetime | None = None
    ) -> None:
        """Set a journal-level state (rejected / skipped / unknown / canceled) with an error text."""
        self._exec(
            "UPDATE orders SET status = ?, error = ?, updated_at = ? WHERE client_order_id = ?",
            (status, error, encode_time(now or utcnow()), client_order_id),
        )

    def set_order_fee(self, client_order_id: str, fee: Decimal, fee_asset: str) -> None:
        self._exec(
            "UPDATE orders SET fee = ?, fee_asset = ? WHERE client_order_id = ?",
            (encode_decimal(fee), fee_asset, client_order_id),
        )

    def link_order(self, client_order_id: str, position_id: int) -> None:
        self._exec("UPDATE orders SET position_id = ? WHERE client_order_id = ?", (position_id, client_order_id))

    def get_order(self, client_order_id: str) -> OrderRecord | None:
        rows = self._query("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,))
        return record_of(OrderRecord, rows[0]) if rows else None

    def pending_orders(self) -> list[OrderRecord]:
        """Orders whose outcome we do not know yet (intent, unknown, open, partially filled)."""
        marks = ",".join("?" for _ in PENDING_ORDER_STATES)
        rows = self._query(f"SELECT * FROM orders WHERE status IN ({marks}) ORDER BY id", PENDING_ORDER_STATES)
        return [record_of(OrderRecord, r) for r in rows]

    def orders(
        self, *, symbol: str | None = None, position_id: int | None = None, limit: int = 200
    ) -> list[OrderRecord]:
        where: list[str] = []
        params: list[Any] = []
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if position_id is not None:
            where.append("position_id = ?")
            params.append(position_id)
        sql = "SELECT * FROM orders" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id LIMIT ?"
        return [record_of(OrderRecord, r) for r in self._query(sql, (*params, limit))]

    def orders_of_position(self, position_id: int, *, purpose: str | None = None) -> list[OrderRecord]:
        """Every order row of one position (all of them, oldest first), optionally of one purpose."""
        sql = "SELECT * FROM orders WHERE position_id = ?" + (" AND purpose = ?" if purpose else "") + " ORDER BY id"
        params: tuple[Any, ...] = (position_id, purpose) if purpose else (position_id,)
        return [record_of(OrderRecord, r) for r in self._query(sql, params)]

    def sell_fills(self, position_id: int) -> list[OrderRecord]:
        """Every sell of this position that filled (partly): what its exit P&L is made of, whichever order
        (a market exit, a backstop, a replaced backstop) the coins left through."""
        rows = self._query(
            """SELECT * FROM orders WHERE position_id = ? AND side = 'sell' AND filled_qty IS NOT NULL
                   AND CAST(filled_qty AS REAL) > 0 ORDER BY id""",
            (position_id,),
        )
        return [record_of(OrderRecord, r) for r in rows]

    def filled_entries_without_position(self) -> list[OrderRecord]:
        """Entry orders that bought something but own no position: the process died between recording the
        fill and opening the position. They are no longer pending, so only this query finds them again
        (`open_position` links an entry order to its position in the same transaction, so a linked one
        has its position)."""
        rows = self._query(FILLED_ENTRIES_WITHOUT_POSITION)
        return [record_of(OrderRecord, r) for r in rows]

    # ----- positions -----

    def open_position(
        self,
        *,
        symbol: str,
        entry_time: datetime,
        entry_price: Decimal,
        entry_filled_qty: Decimal,
        entry_cost: Decimal,
        qty: Decimal,
        stop: StopState,
        tier: str | None = None,
        entry_fee: Decimal | None = None,
        entry_client_order_id: str | None = None,
        decision_id: int | None = None,
        external: bool = False,
    ) -> PositionRecord:
        fee = entry_fee if entry_fee is not None else max(entry_filled_qty - qty, Decimal(0))
        with self.transaction() as conn:
            cur = conn.execute(
                """INSERT INTO positions (symbol, status, tier, external, decision_id, entry_client_order_id,
                       entry_time, entry_price, entry_filled_qty, entry_cost, entry_fee, qty, hwm, stop_price,
                       trail_armed, updated_at)
                   VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    symbol,
                    tier,
                    int(external),
                    decision_id,
                    entry_client_order_id,
                    encode_time(entry_time),
                    encode_decimal(entry_price),
                    encode_decimal(entry_filled_qty),
                    encode_decimal(entry_cost),
                    encode_decimal(fee),
                    encode_decimal(qty),
                    encode_decimal(stop.hwm),
                    encode_decimal(stop.stop_price),
                    int(stop.trail_armed),
                    encode_time(utcnow()),
                ),
            )
            position_id = int(cur.lastrowid or 0)
            if entry_client_order_id:
                conn.execute(
                    "UPDATE orders SET position_id = ? WHERE client_order_id = ?", (position_id, entry_client_order_id)
                )
        return self.get_position(position_id)

    def get_position(self, position_id: int) -> PositionRecord:
        rows = self._query("SELECT * FROM positions WHERE id = ?", (position_id,))
        if not rows:
            raise KeyError(position_id)
        return record_of(PositionRecord, rows[0])

    def open_positions(self) -> list[PositionRecord]:
        return [
            record_of(PositionRecord, r)
            for r in self._query("SELECT * FROM positions WHERE status = 'open' ORDER BY id")
        ]

    def open_position_for(self, symbol: str) -> PositionRecord | None:
        rows = self._query("SELECT * FROM positions WHERE status = 'open' AND symbol = ?", (symbol,))
        return record_of(PositionRecord, rows[0]) if rows else None

    def position_by_entry_order(self, client_order_id: str) -> PositionRecord | None:
        rows = self._query("SELECT * FROM positions WHERE entry_client_order_id = ?", (client_order_id,))
        return record_of(PositionRecord, rows[0]) if rows else None

    def update_stop(self, position_id: int, state: StopState) -> None:
        self._exec(
            "UPDATE positions SET hwm = ?, stop_price = ?, trail_armed = ?, updated_at = ? WHERE id = ?",
            (
                encode_decimal(state.hwm),
                encode_decimal(state.stop_price),
                int(state.trail_armed),
                encode_time(utcnow()),
                position_id,
            ),
        )

    def update_qty(self, position_id: int, qty: Decimal) -> None:
        self._exec(
            "UPDATE positions SET qty = ?, updated_at = ? WHERE id = ?",
            (encode_decimal(qty), encode_time(utcnow()), position_id),
        )

    def update_entry_fill(
        self, position_id: int, *, entry_price: Decimal, entry_filled_qty: Decimal, entry_cost: Decimal, qty: Decimal
    ) -> None:
        """A partially filled entry filled further: the position grows."""
        self._exec(
            """UPDATE positions SET entry_price = ?, entry_filled_qty = ?, entry_cost = ?, qty = ?,
                   entry_fee = ?, updated_at = ? WHERE id = ?""",
            (
                encode_decimal(entry_price),
                encode_decimal(entry_filled_qty),
                encode_decimal(entry_cost),
                encode_decimal(qty),
                encode_decimal(max(entry_filled_qty - qty, Decimal(0))),
                encode_time(utcnow()),
                position_id,
            ),
        )

    def use_backstop_seq(self, position_id: int, seq: int) -> None:
        """Remember that backstop sequence `seq` is taken (its intent is being written): never reused."""
        self._exec(
            "UPDATE positions SET backstop_seq = MAX(backstop_seq, ?), updated_at = ? WHERE id = ?",
            (seq, encode_time(utcnow()), position_id),
        )

    def set_backstop(
        self, position_id: int, *, order_id: str | None, client_order_id: str | None, stop: Decimal | None, seq: int
    ) -> None:
        self._exec(
            """UPDATE positions SET backstop_order_id = ?, backstop_client_order_id = ?, backstop_stop = ?,
                   backstop_seq = MAX(backstop_seq, ?), updated_at = ? WHERE id = ?""",
            (order_id, client_order_id, encode_decimal(stop), seq, encode_time(utcnow()), position_id),
        )

    def close_position(
        self,
        position_id: int,
        *,
        exit_time: datetime,
        exit_price: Decimal | None,
        exit_qty: Decimal,
        reason: str,
        exit_fee: Decimal,
        proceeds: Decimal,
    ) -> PositionRecord:
        """Close with P&L = proceeds (USD received after fees) - entry cost (USD spent)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM positions WHERE id = ?", (position_id,)).fetchone()
            if row is None:
                raise KeyError(position_id)
            position: PositionRecord = record_of(PositionRecord, row)
            if not position.is_open:
                return position
            pnl = proceeds - position.entry_cost
            pnl_pct = (pnl / position.entry_cost * 100) if position.entry_cost else Decimal(0)
            conn.execute(
                """UPDATE positions SET status = 'closed', exit_time = ?, exit_price = ?, exit_qty = ?,
                       exit_reason = ?, exit_fee = ?, proceeds = ?, pnl = ?, pnl_percent = ?, updated_at = ?
                   WHERE id = ?""",
                (
                    encode_time(exit_time),
                    encode_decimal(exit_price),
                    encode_decimal(exit_qty),
                    reason,
                    encode_decimal(exit_fee),
                    encode_decimal(proceeds),
                    encode_decimal(pnl),
                    encode_decimal(pnl_pct.quantize(Decimal("0.0001"))),
                    encode_time(utcnow()),
                    position_id,
                ),
            )
        return self.get_position(position_id)

    def closed_positions(self, *, since: datetime | None = None, symbol: str | None = None) -> list[PositionRecord]:
        where, params = ["status = 'closed'"], []
        if since is not None:
            where.append("exit_time >= ?")
            params.append(encode_time(since))
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        sql = "SELECT * FROM positions WHERE " + " AND ".join(where) + " ORDER BY exit_time"
        return [record_of(PositionRecord, r) for r in self._query(sql, tuple(params))]

    def last_exit_times(self) -> dict[str, datetime]:
        """Symbol -> time of its most recent exit (for the engine's cooldown)."""
        # Runs every cycle (every replayed hour in a backtest), so it must not grow with the number of
        # closed positions: hop from symbol to symbol through the partial (symbol, exit_time) index,
        # taking each one's MAX from the index, instead of a GROUP BY over every closed position.
        rows = self._query(
            """WITH RECURSIVE symbols(symbol) AS (
                   SELECT MIN(symbol) FROM positions INDEXED BY positions_closed_symbol_exit WHERE status = 'closed'
                   UNION ALL
                   SELECT (SELECT MIN(symbol) FROM positions INDEXED BY positions_closed_symbol_exit
                           WHERE status = 'closed' AND symbol > symbols.symbol)
                   FROM symbols WHERE symbol IS NOT NULL
               )
               SELECT symbol, (SELECT MAX(exit_time) FROM positions INDEXED BY positions_closed_symbol_exit
                               WHERE status = 'closed' AND symbol = symbols.symbol) AS t
               FROM symbols WHERE symbol IS NOT NULL"""
        )
        return {r["symbol"]: decode_time(r["t"]) for r in rows if r["t"]}  # type: ignore[misc]

    def realized_totals(self) -> tuple[int, Decimal]:
        """(closed positions, their summed realized P&L): the all-time numbers without loading records."""
        rows = self._query("SELECT pnl FROM positions WHERE status = 'closed'")
        return len(rows), sum((Decimal(r["pnl"]) for r in rows if r["pnl"] is not None), Decimal(0))

    def realized_pnl_for_day(self, day: date | datetime) -> Decimal:
        """Sum of realized P&L of positions closed within that UTC day (the daily loss limit)."""
        if isinstance(day, datetime):
            day = day.astimezone(UTC).date()
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1)
        rows = self._query(
            "SELECT pnl FROM positions WHERE status = 'closed' AND exit_time >= ? AND exit_time < ?",
            (encode_time(start), encode_time(end)),
        )
        return sum((Decimal(r["pnl"]) for r in rows if r["pnl"] is not None), Decimal(0))

    # ----- forecasts -----

    def save_forecast(
        self, *, symbol: str, last_bar_time: datetime, model: str, sampling: Mapping[str, Any] | str, payload: Any
    ) -> None:
        key = sampling if isinstance(sampling, str) else _json(dict(sampling))
        self._exec(
            """INSERT OR REPLACE INTO forecasts (symbol, last_bar_time, model, sampling, created_at, payload)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (symbol, encode_time(last_bar_time), model, key, encode_time(utcnow()), _json(payload)),
        )

    def get_forecast(
        self, *, symbol: str, last_bar_time: datetime, model: str, sampling: Mapping[str, Any] | str
    ) -> Any | None:
        key = sampling if isinstance(sampling, str) else _json(dict(sampling))
        rows = self._query(
            "SELECT payload FROM forecasts WHERE symbol = ? AND last_bar_time = ? AND model = ? AND sampling = ?",
            (symbol, encode_time(last_bar_time), model, key),
        )
        return json.loads(rows[0]["payload"]) if rows else None

    # ----- self-grading: scored forecasts and shadow outcomes -----

    def record_skill_forecast(
        self,
        *,
        symbol: str,
        origin: datetime,
        horizon: int,
        horizon_bar: datetime,
        model: str,
        seed: int | None,
        samples: int,
        facts: Mapping[str, Any],
        now: datetime | None = None,
    ) -> bool:
        """A forecast the trader used, to be scored once `horizon_bar` has closed; False if already there
        (the four cycles of an hour share one forecast)."""
        cur = self._exec(
            """INSERT OR IGNORE INTO skill_forecasts (symbol, origin, horizon, horizon_bar, model, seed, samples,
                   facts, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)""",
            (
                symbol,
                encode_time(origin),
                horizon,
                encode_time(horizon_bar),
                model,
                seed,
                samples,
                _json(dict(facts)),
                encode_time(now or utcnow()),
            ),
        )
        return cur.rowcount > 0

    def pending_skill_forecasts(self, closed_by: datetime) -> list[dict[str, Any]]:
        """Pending forecasts whose horizon bar has closed by `closed_by` (oldest first)."""
        rows = self._query(
            "SELECT * FROM skill_forecasts WHERE status = 'pending' AND horizon_bar <= ? ORDER BY horizon_bar, id",
            (encode_time(closed_by - timedelta(hours=1)),),
        )
        return [self._skill_row(r) for r in rows]

    def finish_skill_forecast(
        self, row_id: int, *, scores: Mapping[str, Any] | None, reason: str | None = None, now: datetime | None = None
    ) -> None:
        """Scored (`scores`), or unscorable with the `reason` (counted, never dropped)."""
        self._exec(
            "UPDATE skill_forecasts SET status = ?, scores = ?, reason = ?, scored_at = ? WHERE id = ?",
            (
                "scored" if scores is not None else "unscorable",
                _json(dict(scores)) if scores is not None else None,
                reason,
                encode_time(now or utcnow()),
                row_id,
            ),
        )

    def skill_forecasts(
        self, *, since: datetime | None = None, symbol: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        where, params = ["1 = 1"], []
        if since is not None:
            where.append("origin >= ?")
            params.append(encode_time(since))
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = "SELECT * FROM skill_forecasts WHERE " + " AND ".join(where) + " ORDER BY origin, symbol"
        return [self._skill_row(r) for r in self._query(sql, tuple(params))]

    def skill_counts(self) -> dict[str, int]:
        """Forecasts by status (pending / scored / unscorable)."""
        rows = self._query("SELECT status, COUNT(*) AS n FROM skill_forecasts GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    @staticmethod
    def _skill_row(row: sqlite3.Row) -> dict[str, Any]:
        item = dict(row)
        item["origin"] = decode_time(item["origin"])
        item["horizon_bar"] = decode_time(item["horizon_bar"])
        item["facts"] = json.loads(item["facts"])
        item["scores"] = json.loads(item["scores"]) if item["scores"] else None
        return item

    def ensure_shadow(self, symbol: str, entry_bar: datetime, now: datetime | None = None) -> None:
        """A shadow entry for the decisions at this symbol's `entry_bar` (one per symbol and bar)."""
        self._exec(
            "INSERT OR IGNORE INTO shadow_outcomes (symbol, entry_bar, status, created_at) VALUES (?, ?, 'pending', ?)",
            (symbol, encode_time(entry_bar), encode_time(now or utcnow())),
        )

    def pending_shadows(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM shadow_outcomes WHERE status = 'pending' ORDER BY entry_bar, id")
        return [{**dict(r), "entry_bar": decode_time(r["entry_bar"])} for r in rows]

    def finish_shadow(
        self,
        row_id: int,
        *,
        entry_price: Decimal | None,
        exit_price: Decimal | None,
        exit_time: datetime | None,
        exit_reason: str,
        return_pct: float | None,
        now: datetime | None = None,
    ) -> None:
        self._exec(
            """UPDATE shadow_outcomes SET status = 'done', entry_price = ?, exit_price = ?, exit_time = ?,
                   exit_reason = ?, return_pct = ?, done_at = ? WHERE id = ?""",
            (
                encode_decimal(entry_price),
                encode_decimal(exit_price),
                encode_time(exit_time),
                exit_reason,
                return_pct,
                encode_time(now or utcnow()),
                row_id,
            ),
        )

    def decisions_with_shadows(self, *, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every decision with its shadow's return (None while pending): the gate attribution's rows.

        A decision's shadow is its symbol's entry at the open of the bar after its last closed bar: the
        hour of `decided_at` (the cycles of one hour share it)."""
        sql = """SELECT d.id, d.symbol, d.decided_at, d.action, d.tier, d.reasons, s.return_pct, s.exit_reason
                 FROM decisions d LEFT JOIN shadow_outcomes s
                   ON s.symbol = d.symbol AND s.entry_bar = strftime('%Y-%m-%dT%H:00:00+00:00', d.decided_at)
                   AND s.status = 'done'"""
        params: tuple[Any, ...] = ()
        if since is not None:
            sql += " WHERE d.decided_at >= ?"
            params = (encode_time(since),)
        rows = self._query(sql + " ORDER BY d.decided_at, d.id", params)
        return [{**dict(r), "reasons": json.loads(r["reasons"])} for r in rows]
