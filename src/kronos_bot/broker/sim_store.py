"""The simulated broker's persistence: its cash, positions and orders, in the journal's SQLite file.

Why in the journal file: a dry run must survive restarts exactly like a paper account does, and one file
means one backup, one WAL and one transaction for a fill and its journal row. Why here and not in the
journal: these tables are the sim broker's state, not the bot's memory; the journal only creates them
(its migrations) and lends its connection. Values are stored like the journal's: Decimal as exact TEXT,
times as ISO-8601 UTC TEXT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kronos_bot.broker.base import OrderResult, OrderSide, OrderStatus, OrderType
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.records import decode_decimal, decode_time, encode_decimal, encode_time, utcnow

OPEN_STATUSES = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})


def _file_order(order: OrderResult) -> tuple[int, str, str]:
    """The sort key of `ORDER BY submitted_at, order_id` on the stored TEXT (NULL first)."""
    submitted = encode_time(order.submitted_at)
    return (0, "", order.order_id) if submitted is None else (1, submitted, order.order_id)


class SimStore:
    """`sim_account`, `sim_positions` and `sim_orders` of one journal file."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        # Read-through copies of cash and positions (`keep_in_memory`); None = read the file.
        self._cash: Decimal | None = None
        self._positions: dict[str, tuple[Decimal, Decimal]] | None = None
        # order_id -> (order as the file would return it, triggered); client_order_id -> order_id
        self._orders: dict[str, tuple[OrderResult, bool]] | None = None
        self._by_client_id: dict[str, str] = {}
        self._open: dict[str, None] = {}  # ids of the remembered orders that are open (an ordered set)
        self._remember = False

    def keep_in_memory(self) -> None:
        """Answer cash, positions and orders from memory (writes still go to the file).

        Only for a journal no other writer shares and whose rolled-back transactions end its user: the
        backtest's in-memory journal (each replayed hour is one transaction, and an exception ends the
        replay; the broker raises before it writes). A backtest reads the account every replayed hour,
        and these two reads were most of the cost of an hour without trades; an optimizer trial reads
        the orders a few times per trade (the exit monitor's held quantity, every backstop move).
        """
        self._remember = True
        rows = self.journal.query("SELECT * FROM sim_orders")
        self._orders, self._by_client_id, self._open = {}, {}, {}
        for row in rows:
            self._remember_order(*self._order(row))

    def cash(self, starting_cash: Decimal) -> Decimal:
        """The sim account's cash, created with `starting_cash` on first use."""
        if self._cash is not None:
            return self._cash
        with self.journal.transaction() as conn:
            row = conn.execute("SELECT cash FROM sim_account WHERE id = 1").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO sim_account (id, cash, starting_cash, updated_at) VALUES (1, ?, ?, ?)",
                    (encode_decimal(starting_cash), encode_decimal(starting_cash), encode_time(utcnow())),
                )
                cash = starting_cash
            else:
                cash = Decimal(row["cash"])
        if self._remember:
            self._cash = cash
        return cash

    def set_cash(self, cash: Decimal) -> None:
        self.journal.execute(
            "UPDATE sim_account SET cash = ?, updated_at = ? WHERE id = 1",
            (encode_decimal(cash), encode_time(utcnow())),
        )
        if self._remember:
            self._cash = cash

    def positions(self) -> dict[str, tuple[Decimal, Decimal]]:
        """symbol -> (qty, avg_entry_price)."""
        if self._positions is not None:
            return dict(self._positions)
        rows = self.journal.query("SELECT * FROM sim_positions ORDER BY symbol")
        found = {r["symbol"]: (Decimal(r["qty"]), Decimal(r["avg_entry_price"])) for r in rows}
        if self._remember:
            self._positions = dict(found)
        return found

    def set_position(self, symbol: str, qty: Decimal, avg_entry_price: Decimal) -> None:
        if qty <= 0:
            self.journal.execute("DELETE FROM sim_positions WHERE symbol = ?", (symbol,))
        else:
            self.journal.execute(
                "INSERT OR REPLACE INTO sim_positions (symbol, qty, avg_entry_price, updated_at) VALUES (?, ?, ?, ?)",
                (symbol, encode_decimal(qty), encode_decimal(avg_entry_price), encode_time(utcnow())),
            )
        if self._positions is not None:
            if qty <= 0:
                self._positions.pop(symbol, None)
            else:
                self._positions[symbol] = (qty, avg_entry_price)
            # The file orders by symbol; so does the copy (get_positions and equity sums read it in order).
            self._positions = dict(sorted(self._positions.items()))

    def save_order(self, order: OrderResult, triggered: bool = False) -> None:
        row = {
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "type": order.type.value,
            "status": order.status.value,
            "qty": encode_decimal(order.qty),
            "notional": encode_decimal(order.notional),
            "filled_qty": encode_decimal(order.filled_qty),
            "filled_avg_price": encode_decimal(order.filled_avg_price),
            "stop_price": encode_decimal(order.stop_price),
            "limit_price": encode_decimal(order.limit_price),
            "fee": encode_decimal(order.fee),
            "fee_asset": order.fee_asset,
            "triggered": int(triggered),
            "replaced_by": order.replaced_by,
            "submitted_at": encode_time(order.submitted_at),
            "filled_at": encode_time(order.filled_at),
            "updated_at": encode_time(utcnow()),
        }
        self.journal.execute(
            f"INSERT OR REPLACE INTO sim_orders ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        if self._orders is not None:
            # Decoded from the very values written, so the copy is what reading the row back returns.
            self._remember_order(*self._order(row))

    def _remember_order(self, order: OrderResult, triggered: bool) -> None:
        """The memory copy of one `INSERT OR REPLACE` (which also drops a row holding the same client id)."""
        assert self._orders is not None
        previous = self._by_client_id.get(order.client_order_id)
        if previous is not None and previous != order.order_id:
            self._orders.pop(previous, None)
            self._open.pop(previous, None)
        self._orders[order.order_id] = (order, triggered)
        self._by_client_id[order.client_order_id] = order.order_id
        if order.status in OPEN_STATUSES:
            self._open[order.order_id] = None
        else:
            self._open.pop(order.order_id, None)

    def _order(self, row: sqlite3.Row | Mapping[str, Any]) -> tuple[OrderResult, bool]:
        order = OrderResult(
            order_id=row["order_id"],
            client_order_id=row["client_order_id"],
            symbol=row["symbol"],
            side=OrderSide(row["side"]),
            type=OrderType(row["type"]),
            status=OrderStatus(row["status"]),
            raw_status=row["status"],
            qty=decode_decimal(row["qty"]),
            notional=decode_decimal(row["notional"]),
            filled_qty=Decimal(row["filled_qty"]),
            filled_avg_price=decode_decimal(row["filled_avg_price"]),
            stop_price=decode_decimal(row["stop_price"]),
            limit_price=decode_decimal(row["limit_price"]),
            fee=decode_decimal(row["fee"]),
            fee_asset=row["fee_asset"],
            submitted_at=decode_time(row["submitted_at"]),
            filled_at=decode_time(row["filled_at"]),
            replaced_by=row["replaced_by"],
        )
        return order, bool(row["triggered"])

    def get_order(self, order_id: str) -> tuple[OrderResult, bool] | None:
        if self._orders is not None:
            return self._orders.get(order_id)
        rows = self.journal.query("SELECT * FROM sim_orders WHERE order_id = ?", (order_id,))
        return self._order(rows[0]) if rows else None

    def get_order_by_client_id(self, client_order_id: str) -> tuple[OrderResult, bool] | None:
        if self._orders is not None:
            order_id = self._by_client_id.get(client_order_id)
            return self._orders.get(order_id) if order_id is not None else None
        rows = self.journal.query("SELECT * FROM sim_orders WHERE client_order_id = ?", (client_order_id,))
        return self._order(rows[0]) if rows else None

    def open_orders(self, symbol: str | None = None) -> list[tuple[OrderResult, bool]]:
        if self._orders is not None:
            orders = self._orders
            found = [orders[i] for i in self._open if symbol is None or orders[i][0].symbol == symbol]
            return sorted(found, key=lambda item: _file_order(item[0]))
        sql = "SELECT * FROM sim_orders WHERE status IN ('open', 'partially_filled')"
        params: tuple[Any, ...] = ()
        if symbol is not None:
            sql += " AND symbol = ?"
            params = (symbol,)
        return [self._order(r) for r in self.journal.query(sql + " ORDER BY submitted_at, order_id", params)]
