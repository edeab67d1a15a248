"""The SQLite journal: the bot's memory across restarts. This module owns ALL of the bot's SQL.

Why SQLite: one file, transactional, survives `systemctl restart` and crashes; WAL lets the CLI read
(`kronos-bot decisions ...`) while the daemon writes. `synchronous=FULL` because an order intent must
be on disk before the request that it describes goes out (a crash between submit and record then
loses nothing: reconciliation finds the intent and asks the broker by client_order_id).

Tables: decisions (every gate number, config fingerprint, model revision), orders (intent first, then
updated), positions (entry, HWM, stop, backstop, exit, fees, P&L), forecasts (cache), cycles (timings),
and the simulated broker's account, positions and orders. Money and quantities are stored as decimal
TEXT (exact), times as ISO-8601 UTC TEXT.

Thread safety: APScheduler runs the entry cycle and the exit monitor in worker threads; the journal keeps
one connection guarded by a re-entrant lock, and `transaction()` groups statements atomically.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from kronos_bot.broker.base import OrderResult, OrderSide, OrderStatus, OrderType
from kronos_bot.domain import Decision, GateResults
from kronos_bot.trader.stops import StopState

# Journal-only order states besides OrderStatus: written-not-yet-sent, outcome unknown, never sent.
ORDER_INTENT = "intent"
ORDER_UNKNOWN = "unknown"
ORDER_SKIPPED = "skipped"
# A cancel about to be sent (journaled first, like every step): until the broker confirms, the order may still fill.
ORDER_CANCEL_REQUESTED = "cancel_requested"
PENDING_ORDER_STATES = (
    ORDER_INTENT,
    ORDER_UNKNOWN,
    ORDER_CANCEL_REQUESTED,
    OrderStatus.OPEN.value,
    OrderStatus.PARTIALLY_FILLED.value,
)


class JournalError(RuntimeError):
    """The journal file cannot be used (newer schema, corrupt...)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("journal times must be tz-aware")
    return value.astimezone(UTC).isoformat()


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _d(value: Decimal | int | float | str | None) -> str | None:
    if value is None:
        return None
    return str(value if isinstance(value, Decimal) else Decimal(str(value)))


def _parse_d(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


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


# ----- schema -----

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE cycles (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                duration_ms REAL,
                status TEXT,
                stats TEXT
            )""",
            """CREATE TABLE decisions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                cycle_id INTEGER REFERENCES cycles(id),
                symbol TEXT NOT NULL,
                decided_at TEXT NOT NULL,
                action TEXT NOT NULL,
                tier TEXT,
                notional TEXT NOT NULL,
                reasons TEXT NOT NULL,
                detail TEXT NOT NULL,
                technical_verdict TEXT,
                sentiment_verdict TEXT,
                sentiment_score REAL,
                kronos_signal TEXT,
                kronos_confidence REAL,
                technical TEXT,
                sentiment TEXT,
                kronos TEXT,
                config_fingerprint TEXT,
                model_revision TEXT
            )""",
            "CREATE INDEX decisions_time ON decisions(decided_at)",
            "CREATE INDEX decisions_symbol_time ON decisions(symbol, decided_at)",
            """CREATE TABLE positions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol TEXT NOT NULL,
                status TEXT NOT NULL,
                tier TEXT,
                external INTEGER NOT NULL DEFAULT 0,
                decision_id INTEGER,
                entry_client_order_id TEXT,
                entry_time TEXT NOT NULL,
                entry_price TEXT NOT NULL,
                entry_filled_qty TEXT NOT NULL,
                entry_cost TEXT NOT NULL,
                entry_fee TEXT NOT NULL,
                qty TEXT NOT NULL,
                hwm TEXT NOT NULL,
                stop_price TEXT,
                trail_armed INTEGER NOT NULL DEFAULT 0,
                backstop_order_id TEXT,
                backstop_client_order_id TEXT,
                backstop_stop TEXT,
                backstop_seq INTEGER NOT NULL DEFAULT 0,
                exit_time TEXT,
                exit_price TEXT,
                exit_qty TEXT,
                exit_reason TEXT,
                exit_fee TEXT,
                proceeds TEXT,
                pnl TEXT,
                pnl_percent TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX positions_one_open ON positions(symbol) WHERE status = 'open'",
            "CREATE INDEX positions_exit_time ON positions(exit_time)",
            """CREATE TABLE orders (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                client_order_id TEXT NOT NULL UNIQUE,
                broker_order_id TEXT,
                symbol TEXT NOT NULL,
                side TEXT NOT NULL,
                type TEXT NOT NULL,
                purpose TEXT NOT NULL,
                position_id INTEGER,
                decision_id INTEGER,
                status TEXT NOT NULL,
                raw_status TEXT,
                notional TEXT,
                qty TEXT,
                stop_price TEXT,
                limit_price TEXT,
                filled_qty TEXT,
                filled_avg_price TEXT,
                fee TEXT,
                fee_asset TEXT,
                error TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX orders_status ON orders(status)",
            "CREATE INDEX orders_broker_id ON orders(broker_order_id)",
            """CREATE TABLE forecasts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol TEXT NOT NULL,
                last_bar_time TEXT NOT NULL,
                model TEXT NOT NULL,
                sampling TEXT NOT NULL,
                created_at TEXT NOT NULL,
                payload TEXT NOT NULL,
                UNIQUE (symbol, last_bar_time, model, sampling)
            )""",
            """CREATE TABLE sim_account (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                cash TEXT NOT NULL,
                starting_cash TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE sim_positions (
                symbol TEXT PRIMARY KEY,
                qty TEXT NOT NULL,
                avg_entry_price TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE sim_orders (
                order_id TEXT PRIMARY KEY,
                client_order_id TEXT NOT NULL UNIQUE,
                symbol TEXT NOT NULL,
                side TEXT NOT NULL,
                type TEXT NOT NULL,
                status TEXT NOT NULL,
                qty TEXT,
                notional TEXT,
                filled_qty TEXT NOT NULL,
                filled_avg_price TEXT,
                stop_price TEXT,
                limit_price TEXT,
                fee TEXT,
                fee_asset TEXT,
                triggered INTEGER NOT NULL DEFAULT 0,
                replaced_by TEXT,
                submitted_at TEXT,
                filled_at TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX sim_orders_status ON sim_orders(status)",
        ],
    ),
    (
        # Indexes for the queries every cycle runs (and a backtest runs per replayed hour): open
        # positions, each symbol's last exit (the cooldown), a position's orders.
        2,
        [
            "CREATE INDEX positions_status ON positions(status, exit_time)",
            "CREATE INDEX positions_closed_symbol_exit ON positions(symbol, exit_time) WHERE status = 'closed'",
            "CREATE INDEX orders_position ON orders(position_id, id)",
        ],
    ),
    (
        # Why an exit order was sent (trailing_stop, stop_loss...): a sell that fills while the bot is down
        # closes its position with that reason after the restart, never as `external`.
        3,
        ["ALTER TABLE orders ADD COLUMN reason TEXT", "ALTER TABLE orders ADD COLUMN filled_at TEXT"],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


# ----- records -----


@dataclass(frozen=True)
class PositionRecord:
    id: int
    symbol: str
    status: str
    tier: str | None
    external: bool
    decision_id: int | None
    entry_client_order_id: str | None
    entry_time: datetime
    entry_price: Decimal
    entry_filled_qty: Decimal
    entry_cost: Decimal  # USD spent
    entry_fee: Decimal  # in the coin (filled qty - qty received)
    qty: Decimal  # held now (the broker's position qty)
    hwm: Decimal
    stop_price: Decimal | None
    trail_armed: bool
    backstop_order_id: str | None
    backstop_client_order_id: str | None
    backstop_stop: Decimal | None
    backstop_seq: int
    exit_time: datetime | None
    exit_price: Decimal | None
    exit_qty: Decimal | None
    exit_reason: str | None
    exit_fee: Decimal | None  # USD
    proceeds: Decimal | None  # USD received, after fees
    pnl: Decimal | None
    pnl_percent: Decimal | None
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def stop_state(self) -> StopState:
        return StopState(
            entry_price=self.entry_price,
            entry_time=self.entry_time,
            hwm=self.hwm,
            stop_price=self.stop_price,
            trail_armed=self.trail_armed,
        )


@dataclass(frozen=True)
class OrderRecord:
    id: int
    client_order_id: str
    broker_order_id: str | None
    symbol: str
    side: str
    type: str
    purpose: str  # entry | exit | backstop
    position_id: int | None
    decision_id: int | None
    status: str
    raw_status: str | None
    notional: Decimal | None
    qty: Decimal | None
    stop_price: Decimal | None
    limit_price: Decimal | None
    filled_qty: Decimal | None
    filled_avg_price: Decimal | None
    fee: Decimal | None
    fee_asset: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    reason: str | None = None  # exit orders: the exit reason they were sent for
    filled_at: datetime | None = None  # the broker's time of the (last) fill

    @property
    def is_pending(self) -> bool:
        return self.status in PENDING_ORDER_STATES


_DEC_FIELDS = {
    "entry_price",
    "entry_filled_qty",
    "entry_cost",
    "entry_fee",
    "qty",
    "hwm",
    "stop_price",
    "backstop_stop",
    "exit_price",
    "exit_qty",
    "exit_fee",
    "proceeds",
    "pnl",
    "pnl_percent",
    "notional",
    "filled_qty",
    "filled_avg_price",
    "fee",
    "limit_price",
}
_TS_FIELDS = {"entry_time", "exit_time", "updated_at", "created_at", "filled_at"}
_BOOL_FIELDS = {"external", "trail_armed"}


@functools.cache
def _converters(cls: type) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """Per record class, each field's name and its SQLite -> Python converter, None when the value is
    used as stored (computed once: a backtest builds ~50,000 records)."""

    def pick(name: str) -> Callable[[Any], Any] | None:
        if name in _DEC_FIELDS:
            return _parse_d
        if name in _TS_FIELDS:
            return _parse_ts
        if name in _BOOL_FIELDS:
            return bool
        return None

    return tuple((f.name, pick(f.name)) for f in fields(cls))


@functools.cache
def _plan(cls: type, columns: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any] | None], ...]:
    """For rows with these columns: each field's column position and converter, in field order."""
    position = {name: i for i, name in enumerate(columns)}
    return tuple((position[name], convert) for name, convert in _converters(cls))


def _record(cls: type, row: sqlite3.Row) -> Any:
    values = tuple(row)
    return cls(*[values[i] if convert is None else convert(values[i]) for i, convert in _plan(cls, tuple(row.keys()))])


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

    def _exec(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
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
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, _ts(_now())))

    def schema_version(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0])

    # ----- cycles -----

    def start_cycle(self, kind: str, started_at: datetime) -> int:
        cur = self._exec("INSERT INTO cycles (kind, started_at) VALUES (?, ?)", (kind, _ts(started_at)))
        return int(cur.lastrowid or 0)

    def end_cycle(self, cycle_id: int, ended_at: datetime, status: str, stats: Mapping[str, Any] | None = None) -> None:
        row = self._query("SELECT started_at FROM cycles WHERE id = ?", (cycle_id,))
        duration = None
        if row:
            started = _parse_ts(row[0]["started_at"])
            duration = (ended_at - started).total_seconds() * 1000 if started else None
        self._exec(
            "UPDATE cycles SET ended_at = ?, duration_ms = ?, status = ?, stats = ? WHERE id = ?",
            (_ts(ended_at), duration, status, _json(dict(stats or {})), cycle_id),
        )

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
        decided_at = decision.decided_at or _now()
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
                _ts(decided_at),
                decision.action.value,
                decision.tier.value if decision.tier else None,
                _d(decision.notional),
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
            params.append(_ts(since))
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
        stamp = _ts(now or _now())
        with self.transaction() as conn:
            existing = conn.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
            if existing is not None:
                return _record(OrderRecord, existing), False
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
                    _d(notional),
                    _d(qty),
                    _d(stop_price),
                    _d(limit_price),
                    stamp,
                    stamp,
                    reason,
                ),
            )
            row = conn.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
        return _record(OrderRecord, row), True

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
                    _d(result.filled_qty),
                    _d(result.filled_avg_price),
                    _d(result.fee),
                    result.fee_asset,
                    _d(result.stop_price),
                    _d(result.limit_price),
                    _d(result.qty),
                    _ts(result.filled_at),
                    _ts(now or _now()),
                    client_order_id,
                ),
            )
            row = conn.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
        if row is None:
            raise KeyError(client_order_id)
        return _record(OrderRecord, row)

    def mark_order(
        self, client_order_id: str, status: str, error: str | None = None, now: datetime | None = None
    ) -> None:
        """Set a journal-level state (rejected / skipped / unknown / canceled) with an error text."""
        self._exec(
            "UPDATE orders SET status = ?, error = ?, updated_at = ? WHERE client_order_id = ?",
            (status, error, _ts(now or _now()), client_order_id),
        )

    def set_order_fee(self, client_order_id: str, fee: Decimal, fee_asset: str) -> None:
        self._exec(
            "UPDATE orders SET fee = ?, fee_asset = ? WHERE client_order_id = ?", (_d(fee), fee_asset, client_order_id)
        )

    def link_order(self, client_order_id: str, position_id: int) -> None:
        self._exec("UPDATE orders SET position_id = ? WHERE client_order_id = ?", (position_id, client_order_id))

    def get_order(self, client_order_id: str) -> OrderRecord | None:
        rows = self._query("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,))
        return _record(OrderRecord, rows[0]) if rows else None

    def pending_orders(self) -> list[OrderRecord]:
        """Orders whose outcome we do not know yet (intent, unknown, open, partially filled)."""
        marks = ",".join("?" for _ in PENDING_ORDER_STATES)
        rows = self._query(f"SELECT * FROM orders WHERE status IN ({marks}) ORDER BY id", PENDING_ORDER_STATES)
        return [_record(OrderRecord, r) for r in rows]

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
        return [_record(OrderRecord, r) for r in self._query(sql, (*params, limit))]

    def orders_of_position(self, position_id: int, *, purpose: str | None = None) -> list[OrderRecord]:
        """Every order row of one position (all of them, oldest first), optionally of one purpose."""
        sql = "SELECT * FROM orders WHERE position_id = ?" + (" AND purpose = ?" if purpose else "") + " ORDER BY id"
        params: tuple[Any, ...] = (position_id, purpose) if purpose else (position_id,)
        return [_record(OrderRecord, r) for r in self._query(sql, params)]

    def sell_fills(self, position_id: int) -> list[OrderRecord]:
        """Every sell of this position that filled (partly): what its exit P&L is made of, whichever order
        (a market exit, a backstop, a replaced backstop) the coins left through."""
        rows = self._query(
            """SELECT * FROM orders WHERE position_id = ? AND side = 'sell' AND filled_qty IS NOT NULL
                   AND CAST(filled_qty AS REAL) > 0 ORDER BY id""",
            (position_id,),
        )
        return [_record(OrderRecord, r) for r in rows]

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
                    _ts(entry_time),
                    _d(entry_price),
                    _d(entry_filled_qty),
                    _d(entry_cost),
                    _d(fee),
                    _d(qty),
                    _d(stop.hwm),
                    _d(stop.stop_price),
                    int(stop.trail_armed),
                    _ts(_now()),
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
        return _record(PositionRecord, rows[0])

    def open_positions(self) -> list[PositionRecord]:
        return [
            _record(PositionRecord, r) for r in self._query("SELECT * FROM positions WHERE status = 'open' ORDER BY id")
        ]

    def open_position_for(self, symbol: str) -> PositionRecord | None:
        rows = self._query("SELECT * FROM positions WHERE status = 'open' AND symbol = ?", (symbol,))
        return _record(PositionRecord, rows[0]) if rows else None

    def position_by_entry_order(self, client_order_id: str) -> PositionRecord | None:
        rows = self._query("SELECT * FROM positions WHERE entry_client_order_id = ?", (client_order_id,))
        return _record(PositionRecord, rows[0]) if rows else None

    def update_stop(self, position_id: int, state: StopState) -> None:
        self._exec(
            "UPDATE positions SET hwm = ?, stop_price = ?, trail_armed = ?, updated_at = ? WHERE id = ?",
            (_d(state.hwm), _d(state.stop_price), int(state.trail_armed), _ts(_now()), position_id),
        )

    def update_qty(self, position_id: int, qty: Decimal) -> None:
        self._exec("UPDATE positions SET qty = ?, updated_at = ? WHERE id = ?", (_d(qty), _ts(_now()), position_id))

    def update_entry_fill(
        self, position_id: int, *, entry_price: Decimal, entry_filled_qty: Decimal, entry_cost: Decimal, qty: Decimal
    ) -> None:
        """A partially filled entry filled further: the position grows."""
        self._exec(
            """UPDATE positions SET entry_price = ?, entry_filled_qty = ?, entry_cost = ?, qty = ?,
                   entry_fee = ?, updated_at = ? WHERE id = ?""",
            (
                _d(entry_price),
                _d(entry_filled_qty),
                _d(entry_cost),
                _d(qty),
                _d(max(entry_filled_qty - qty, Decimal(0))),
                _ts(_now()),
                position_id,
            ),
        )

    def use_backstop_seq(self, position_id: int, seq: int) -> None:
        """Remember that backstop sequence `seq` is taken (its intent is being written): never reused."""
        self._exec(
            "UPDATE positions SET backstop_seq = MAX(backstop_seq, ?), updated_at = ? WHERE id = ?",
            (seq, _ts(_now()), position_id),
        )

    def set_backstop(
        self, position_id: int, *, order_id: str | None, client_order_id: str | None, stop: Decimal | None, seq: int
    ) -> None:
        self._exec(
            """UPDATE positions SET backstop_order_id = ?, backstop_client_order_id = ?, backstop_stop = ?,
                   backstop_seq = MAX(backstop_seq, ?), updated_at = ? WHERE id = ?""",
            (order_id, client_order_id, _d(stop), seq, _ts(_now()), position_id),
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
            position: PositionRecord = _record(PositionRecord, row)
            if not position.is_open:
                return position
            pnl = proceeds - position.entry_cost
            pnl_pct = (pnl / position.entry_cost * 100) if position.entry_cost else Decimal(0)
            conn.execute(
                """UPDATE positions SET status = 'closed', exit_time = ?, exit_price = ?, exit_qty = ?,
                       exit_reason = ?, exit_fee = ?, proceeds = ?, pnl = ?, pnl_percent = ?, updated_at = ?
                   WHERE id = ?""",
                (
                    _ts(exit_time),
                    _d(exit_price),
                    _d(exit_qty),
                    reason,
                    _d(exit_fee),
                    _d(proceeds),
                    _d(pnl),
                    _d(pnl_pct.quantize(Decimal("0.0001"))),
                    _ts(_now()),
                    position_id,
                ),
            )
        return self.get_position(position_id)

    def closed_positions(self, *, since: datetime | None = None, symbol: str | None = None) -> list[PositionRecord]:
        where, params = ["status = 'closed'"], []
        if since is not None:
            where.append("exit_time >= ?")
            params.append(_ts(since))
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        sql = "SELECT * FROM positions WHERE " + " AND ".join(where) + " ORDER BY exit_time"
        return [_record(PositionRecord, r) for r in self._query(sql, tuple(params))]

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
        return {r["symbol"]: _parse_ts(r["t"]) for r in rows if r["t"]}  # type: ignore[misc]

    def realized_pnl_for_day(self, day: date | datetime) -> Decimal:
        """Sum of realized P&L of positions closed within that UTC day (the daily loss limit)."""
        if isinstance(day, datetime):
            day = day.astimezone(UTC).date()
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1)
        rows = self._query(
            "SELECT pnl FROM positions WHERE status = 'closed' AND exit_time >= ? AND exit_time < ?",
            (_ts(start), _ts(end)),
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
            (symbol, _ts(last_bar_time), model, key, _ts(_now()), _json(payload)),
        )

    def get_forecast(
        self, *, symbol: str, last_bar_time: datetime, model: str, sampling: Mapping[str, Any] | str
    ) -> Any | None:
        key = sampling if isinstance(sampling, str) else _json(dict(sampling))
        rows = self._query(
            "SELECT payload FROM forecasts WHERE symbol = ? AND last_bar_time = ? AND model = ? AND sampling = ?",
            (symbol, _ts(last_bar_time), model, key),
        )
        return json.loads(rows[0]["payload"]) if rows else None

    # ----- the simulated broker's state -----

    def sim_cash(self, starting_cash: Decimal) -> Decimal:
        """The sim account's cash, created with `starting_cash` on first use."""
        with self.transaction() as conn:
            row = conn.execute("SELECT cash FROM sim_account WHERE id = 1").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO sim_account (id, cash, starting_cash, updated_at) VALUES (1, ?, ?, ?)",
                    (_d(starting_cash), _d(starting_cash), _ts(_now())),
                )
                return starting_cash
            return Decimal(row["cash"])

    def sim_set_cash(self, cash: Decimal) -> None:
        self._exec("UPDATE sim_account SET cash = ?, updated_at = ? WHERE id = 1", (_d(cash), _ts(_now())))

    def sim_positions(self) -> dict[str, tuple[Decimal, Decimal]]:
        """symbol -> (qty, avg_entry_price)."""
        rows = self._query("SELECT * FROM sim_positions ORDER BY symbol")
        return {r["symbol"]: (Decimal(r["qty"]), Decimal(r["avg_entry_price"])) for r in rows}

    def sim_set_position(self, symbol: str, qty: Decimal, avg_entry_price: Decimal) -> None:
        if qty <= 0:
            self._exec("DELETE FROM sim_positions WHERE symbol = ?", (symbol,))
            return
        self._exec(
            "INSERT OR REPLACE INTO sim_positions (symbol, qty, avg_entry_price, updated_at) VALUES (?, ?, ?, ?)",
            (symbol, _d(qty), _d(avg_entry_price), _ts(_now())),
        )

    def sim_save_order(self, order: OrderResult, triggered: bool = False) -> None:
        self._exec(
            """INSERT OR REPLACE INTO sim_orders (order_id, client_order_id, symbol, side, type, status, qty,
                   notional, filled_qty, filled_avg_price, stop_price, limit_price, fee, fee_asset, triggered,
                   replaced_by, submitted_at, filled_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                order.order_id,
                order.client_order_id,
                order.symbol,
                order.side.value,
                order.type.value,
                order.status.value,
                _d(order.qty),
                _d(order.notional),
                _d(order.filled_qty),
                _d(order.filled_avg_price),
                _d(order.stop_price),
                _d(order.limit_price),
                _d(order.fee),
                order.fee_asset,
                int(triggered),
                order.replaced_by,
                _ts(order.submitted_at),
                _ts(order.filled_at),
                _ts(_now()),
            ),
        )

    def _sim_order(self, row: sqlite3.Row) -> tuple[OrderResult, bool]:
        order = OrderResult(
            order_id=row["order_id"],
            client_order_id=row["client_order_id"],
            symbol=row["symbol"],
            side=OrderSide(row["side"]),
            type=OrderType(row["type"]),
            status=OrderStatus(row["status"]),
            raw_status=row["status"],
            qty=_parse_d(row["qty"]),
            notional=_parse_d(row["notional"]),
            filled_qty=Decimal(row["filled_qty"]),
            filled_avg_price=_parse_d(row["filled_avg_price"]),
            stop_price=_parse_d(row["stop_price"]),
            limit_price=_parse_d(row["limit_price"]),
            fee=_parse_d(row["fee"]),
            fee_asset=row["fee_asset"],
            submitted_at=_parse_ts(row["submitted_at"]),
            filled_at=_parse_ts(row["filled_at"]),
            replaced_by=row["replaced_by"],
        )
        return order, bool(row["triggered"])

    def sim_get_order(self, order_id: str) -> tuple[OrderResult, bool] | None:
        rows = self._query("SELECT * FROM sim_orders WHERE order_id = ?", (order_id,))
        return self._sim_order(rows[0]) if rows else None

    def sim_get_order_by_client_id(self, client_order_id: str) -> tuple[OrderResult, bool] | None:
        rows = self._query("SELECT * FROM sim_orders WHERE client_order_id = ?", (client_order_id,))
        return self._sim_order(rows[0]) if rows else None

    def sim_open_orders(self, symbol: str | None = None) -> list[tuple[OrderResult, bool]]:
        sql = "SELECT * FROM sim_orders WHERE status IN ('open', 'partially_filled')"
        params: tuple[Any, ...] = ()
        if symbol is not None:
            sql += " AND symbol = ?"
            params = (symbol,)
        return [self._sim_order(r) for r in self._query(sql + " ORDER BY submitted_at, order_id", params)]
