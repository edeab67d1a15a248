"""The SQLite journal: schema version, intent-before-submit, positions across restarts, helpers."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kronos_bot.broker.base import OrderResult, OrderSide, OrderStatus, OrderType
from kronos_bot.config import ExitSettings
from kronos_bot.domain import (
    Action,
    Decision,
    GateResults,
    KronosResult,
    KronosSignal,
    SentimentResult,
    SentimentVerdict,
    TechnicalResult,
    TechnicalVerdict,
    Tier,
)
from kronos_bot.trader.journal import FILLED_ENTRIES_WITHOUT_POSITION, SCHEMA_VERSION, Journal, JournalError
from kronos_bot.trader.stops import initial_state

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
D = Decimal


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "var" / "journal.sqlite")
    yield j
    j.close()


def _open(j: Journal, symbol: str = "BTC/USD", price: str = "100", when: datetime = T0):
    return j.open_position(
        symbol=symbol,
        entry_time=when,
        entry_price=D(price),
        entry_filled_qty=D("1"),
        entry_cost=D(price),
        qty=D("0.9975"),
        stop=initial_state(D(price), when, ExitSettings()),
        tier="triple_confirmed",
    )


def test_schema_version_wal_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        assert j.schema_version() == SCHEMA_VERSION
    with Journal(path) as j:  # migrations are idempotent
        assert j.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("INSERT INTO schema_version VALUES (999, 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="newer"):
        Journal(path)


def test_intent_is_durable_before_submit(tmp_path: Path) -> None:
    """Written and committed before any request: a second connection (a crashed-and-restarted bot) sees it."""
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    rec, created = j.record_order_intent(
        client_order_id="kb-BTCUSD-buy-1",
        symbol="BTC/USD",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        purpose="entry",
        notional=D("100.00"),
    )
    assert created and rec.status == "intent"
    other = Journal(path)
    pending = other.pending_orders()
    assert [o.client_order_id for o in pending] == ["kb-BTCUSD-buy-1"]
    assert pending[0].notional == D("100.00")
    again, created2 = other.record_order_intent(
        client_order_id="kb-BTCUSD-buy-1", symbol="BTC/USD", side="buy", type="market", purpose="entry"
    )
    assert not created2 and again.id == rec.id
    other.close()
    j.close()


def test_order_update_and_pending(journal: Journal) -> None:
    journal.record_order_intent(
        client_order_id="c1", symbol="BTC/USD", side="buy", type="market", purpose="entry", notional=D(100)
    )
    result = OrderResult(
        order_id="o1",
        client_order_id="c1",
        symbol="BTC/USD",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        status=OrderStatus.FILLED,
        raw_status="filled",
        filled_qty=D("0.001"),
        filled_avg_price=D("100000"),
    )
    rec = journal.update_order("c1", result)
    assert rec.status == "filled" and rec.broker_order_id == "o1" and rec.filled_avg_price == D(100000)
    assert journal.pending_orders() == []
    journal.mark_order("c1", "rejected", "403 insufficient balance")
    assert journal.get_order("c1").error == "403 insufficient balance"


def test_position_lifecycle_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    pos = _open(j)
    assert pos.is_open and pos.entry_fee == D("0.0025") and pos.stop_price == D(98)
    state = pos.stop_state()
    from kronos_bot.trader.stops import update_stop

    state, _ = update_stop(state, D(120), ExitSettings(), T0 + timedelta(minutes=5))
    j.update_stop(pos.id, state)
    j.set_backstop(pos.id, order_id="b1", client_order_id="kb-stop-1", stop=D("117.6"), seq=1)
    j.close()

    j2 = Journal(path)  # restart: HWM, stop and backstop come back exactly
    again = j2.open_position_for("BTC/USD")
    assert again is not None
    assert again.hwm == D(120) and again.stop_price == D("117.60") and again.trail_armed
    assert again.backstop_order_id == "b1" and again.backstop_seq == 1
    assert again.entry_time == T0

    closed = j2.close_position(
        again.id,
        exit_time=T0 + timedelta(hours=2),
        exit_price=D("117.5"),
        exit_qty=D("0.9975"),
        reason="trailing_stop",
        exit_fee=D("0.29"),
        proceeds=D("116.9"),
    )
    assert closed.status == "closed" and closed.pnl == D("16.9") and closed.pnl_percent == D("16.9000")
    assert j2.open_positions() == []
    assert j2.last_exit_times() == {"BTC/USD": T0 + timedelta(hours=2)}
    j2.close()


def test_one_open_position_per_symbol(journal: Journal) -> None:
    _open(journal)
    with pytest.raises(sqlite3.IntegrityError):
        _open(journal)
    _open(journal, symbol="ETH/USD")
    assert {p.symbol for p in journal.open_positions()} == {"BTC/USD", "ETH/USD"}


def test_realized_pnl_for_utc_day(journal: Journal) -> None:
    for i, (when, proceeds) in enumerate(
        [
            (datetime(2025, 3, 1, 0, 0, tzinfo=UTC), "90"),  # -10, day 1
            (datetime(2025, 3, 1, 23, 59, tzinfo=UTC), "95"),  # -5, day 1
            (datetime(2025, 3, 2, 0, 0, tzinfo=UTC), "130"),  # +30, day 2
        ]
    ):
        p = _open(journal, symbol=f"C{i}/USD", when=when - timedelta(hours=1))
        journal.close_position(
            p.id,
            exit_time=when,
            exit_price=D(1),
            exit_qty=D(1),
            reason="stop_loss",
            exit_fee=D(0),
            proceeds=D(proceeds),
        )
    assert journal.realized_pnl_for_day(datetime(2025, 3, 1, 15, tzinfo=UTC)) == D(-15)
    assert journal.realized_pnl_for_day(datetime(2025, 3, 2, tzinfo=UTC).date()) == D(30)
    assert journal.realized_pnl_for_day(datetime(2025, 3, 3, tzinfo=UTC)) == D(0)


def test_decisions_with_every_gate_number(journal: Journal) -> None:
    gates = GateResults(
        symbol="ETH/USD",
        technical=TechnicalResult(
            verdict=TechnicalVerdict.PASS,
            rsi=55.5,
            ema_fast=1.0,
            ema_slow=0.9,
            checks={"rsi": True, "ema": True, "macd": None},
        ),
        sentiment=SentimentResult(verdict=SentimentVerdict.NEUTRAL, score=0.01, articles=3),
        kronos=KronosResult(signal=KronosSignal.UP, confidence=0.61, actionable=True, pct=0.8, quantiles={"p10": 1.0}),
    )
    decision = Decision(
        symbol="ETH/USD",
        action=Action.ENTER,
        tier=Tier.KRONOS_ONLY,
        notional=D("60.00"),
        reasons=["kronos_only"],
        decided_at=T0,
        detail="ENTER kronos_only",
    )
    cycle = journal.start_cycle("entry", T0)
    journal.record_decision(decision, gates, cycle_id=cycle, config_fingerprint="abc123", model_revision="rev1")
    journal.record_decision(Decision("BTC/USD", Action.SKIP, None, D(0), ["kronos_not_up"], T0 + timedelta(1)))
    journal.end_cycle(cycle, T0 + timedelta(seconds=3), "ok", {"symbols": 2})

    rows = journal.recent_decisions(symbol="ETH/USD")
    assert len(rows) == 1
    row = rows[0]
    assert row["technical"]["rsi"] == 55.5 and row["technical"]["checks"]["macd"] is None
    assert row["kronos"]["quantiles"] == {"p10": 1.0} and row["kronos_confidence"] == 0.61
    assert row["config_fingerprint"] == "abc123" and row["model_revision"] == "rev1"
    assert row["notional"] == D("60.00") and row["reasons"] == ["kronos_only"]
    assert [r["symbol"] for r in journal.recent_decisions(since=T0 + timedelta(hours=1))] == ["BTC/USD"]
    assert journal.recent_cycles()[0]["duration_ms"] == pytest.approx(3000)


def test_forecast_cache(journal: Journal) -> None:
    key = {
        "symbol": "BTC/USD",
        "last_bar_time": T0,
        "model": "Kronos-small@901c",
        "sampling": {"pred_len": 4, "T": 1.0},
    }
    assert journal.get_forecast(**key) is None
    journal.save_forecast(**key, payload={"close": [1.0, 2.0]})
    assert journal.get_forecast(**key) == {"close": [1.0, 2.0]}
    assert journal.get_forecast(**{**key, "sampling": {"pred_len": 8}}) is None


def test_threads_share_one_journal(journal: Journal) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                journal.record_order_intent(
                    client_order_id=f"t{n}-{i}", symbol="BTC/USD", side="buy", type="market", purpose="entry"
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(journal.pending_orders()) == 80


def test_transaction_rolls_back(journal: Journal) -> None:
    with pytest.raises(RuntimeError), journal.transaction():
        journal.record_order_intent(client_order_id="x", symbol="BTC/USD", side="buy", type="market", purpose="entry")
        raise RuntimeError("boom")
    assert journal.get_order("x") is None


def test_last_exit_times_per_symbol_over_many_positions() -> None:
    """The index-hopping query returns each symbol's latest exit, open positions and other symbols aside."""
    j = Journal(":memory:")
    expected: dict[str, datetime] = {}
    for i in range(40):
        symbol = ("BTC/USD", "ETH/USD", "SOL/USD")[i % 3]
        pos = _open(j, symbol, when=T0 + timedelta(hours=i))
        # Exit times not in insertion order: the latest exit is not the last position closed.
        exit_time = T0 + timedelta(hours=i + (50 if i == 4 else 1))
        j.close_position(
            pos.id,
            exit_time=exit_time,
            exit_price=D("101"),
            exit_qty=D("0.9975"),
            reason="trailing_stop",
            exit_fee=D("0.25"),
            proceeds=D("100.5"),
        )
        expected[symbol] = max(expected.get(symbol, exit_time), exit_time)
    _open(j, "DOGE/USD", when=T0 + timedelta(hours=99))  # open: no exit yet
    assert j.last_exit_times() == expected
    assert expected["ETH/USD"] == T0 + timedelta(hours=54)
    j.close()


def test_version_1_journal_gains_the_version_2_indexes(tmp_path: Path) -> None:
    from kronos_bot.trader.journal import MIGRATIONS

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0][1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00+00:00')")
    conn.commit()
    conn.close()
    with Journal(path) as j:
        assert j.schema_version() == SCHEMA_VERSION >= 2
        names = {r[0] for r in j._query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"positions_status", "positions_closed_symbol_exit", "orders_position"} <= names
        assert j.last_exit_times() == {}


def test_filled_entries_without_position_is_an_index_lookup(tmp_path: Path) -> None:
    """Asked every cycle: it must not scan every order of a journal that grows for months."""
    with Journal(tmp_path / "j.sqlite") as j:
        plan = " | ".join(str(tuple(r)) for r in j.query("EXPLAIN QUERY PLAN " + FILLED_ENTRIES_WITHOUT_POSITION))
    assert "USING INDEX orders_unlinked_entries" in plan, plan
    assert "positions_entry_client_order_id" in plan, plan
