"""The journal's records and value encodings: what a row of `positions` or `orders` is in Python.

Money and quantities are Decimal, stored as exact decimal TEXT; times are tz-aware UTC datetimes, stored
as ISO-8601 TEXT. The converters are public for the stores that share the journal file (the sim broker's).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kronos_bot.broker.base import OrderStatus
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def encode_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is UTC:  # the common case, and astimezone would give the same text
        return value.isoformat()
    if value.tzinfo is None:
        raise ValueError("journal times must be tz-aware")
    return value.astimezone(UTC).isoformat()


def decode_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def encode_decimal(value: Decimal | int | float | str | None) -> str | None:
    if value is None:
        return None
    return str(value if isinstance(value, Decimal) else Decimal(str(value)))


def decode_decimal(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


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
            return decode_decimal
        if name in _TS_FIELDS:
            return decode_time
        if name in _BOOL_FIELDS:
            return bool
        return None

    return tuple((f.name, pick(f.name)) for f in fields(cls))


@functools.cache
def _plan(cls: type, columns: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any] | None], ...]:
    """For rows with these columns: each field's column position and converter, in field order."""
    position = {name: i for i, name in enumerate(columns)}
    return tuple((position[name], convert) for name, convert in _converters(cls))


def record_of(cls: type, row: sqlite3.Row) -> Any:
    values = tuple(row)
    return cls(*[values[i] if convert is None else convert(values[i]) for i, convert in _plan(cls, tuple(row.keys()))])
