"""`kronos-bot profit`: realized P&L from the journal, checked against numbers worked out by hand.

The journal holds five closed trades (written through the trader's own open/close calls) and one
closed row whose P&L never got written (TRADES below: entry 2025-03-0x 12:00 UTC, hold in hours):

  #  symbol    tier              day  hold  cost  proceeds  exit fee  entry fee (coin)  P&L     %    reason
  1  BTC/USD   triple_confirmed  1    4h    100   109.50    0.30      0.0025 @100        9.50   9.5  trailing_stop
  2  BTC/USD   kronos_only       2    2h    100    96.00    0.20      0.00125 @200      -4.00  -4.0  stop_loss
  3  ETH/USD   triple_confirmed  2    6h    200   203.00    0.40      0.01 @50           3.00   1.5  max_hold
  4  SOL/USD   kronos_only       3    10h   100   100.00    0         0                  0      0    max_hold
  5  DOGE/USD  (none, external)  3    1h    100    90.00    0         0                -10.00 -10    external
  6  ETH/USD   triple_confirmed  2    8h    closed, then its P&L set to NULL: skipped

Fees in USD: 0.30+0.25=0.55, 0.20+0.25=0.45, 0.40+0.50=0.90, 0, 0 -> 1.90.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from kronos_bot.cli import main
from kronos_bot.config import ExitSettings
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.profit import ProfitRow, fees_usd, profit_report, report_document, table_lines
from kronos_bot.trader.records import PositionRecord
from kronos_bot.trader.stops import initial_state
from tests.conftest import SHIPPED_CONFIG

D = Decimal
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
H = timedelta(hours=1)


def _trade(
    j: Journal,
    *,
    symbol: str,
    tier: str | None,
    entry_time: datetime,
    price: str,
    filled: str,
    qty: str,
    exit_time: datetime,
    proceeds: str,
    exit_fee: str,
    reason: str,
    external: bool = False,
) -> PositionRecord:
    entry_price, filled_qty = D(price), D(filled)
    position = j.open_position(
        symbol=symbol,
        entry_time=entry_time,
        entry_price=entry_price,
        entry_filled_qty=filled_qty,
        entry_cost=filled_qty * entry_price,
        qty=D(qty),
        stop=initial_state(entry_price, entry_time, ExitSettings()),
        tier=tier,
        external=external,
    )
    return j.close_position(
        position.id,
        exit_time=exit_time,
        exit_price=None,
        exit_qty=D(qty),
        reason=reason,
        exit_fee=D(exit_fee),
        proceeds=D(proceeds),
    )


# symbol, tier, entry day offset, entry price, filled qty, qty received, hold hours, proceeds, exit fee, reason
TRADES = (
    ("BTC/USD", "triple_confirmed", 0, "100", "1", "0.9975", 4, "109.50", "0.30", "trailing_stop"),
    ("BTC/USD", "kronos_only", 1, "200", "0.5", "0.49875", 2, "96.00", "0.20", "stop_loss"),
    ("ETH/USD", "triple_confirmed", 1, "50", "4", "3.99", 6, "203.00", "0.40", "max_hold"),
    ("SOL/USD", "kronos_only", 2, "20", "5", "5", 10, "100", "0", "max_hold"),
    ("DOGE/USD", None, 2, "0.1", "1000", "1000", 1, "90", "0", "external"),
    ("ETH/USD", "triple_confirmed", 1, "50", "1", "1", 8, "60", "0", "max_hold"),  # P&L nulled below
)


def build_journal(path: Path) -> None:
    with Journal(path) as j:
        closed = [
            _trade(
                j,
                symbol=symbol,
                tier=tier,
                entry_time=T0 + day * DAY,
                price=price,
                filled=filled,
                qty=qty,
                exit_time=T0 + day * DAY + hours * H,
                proceeds=proceeds,
                exit_fee=exit_fee,
                reason=reason,
                external=tier is None,
            )
            for symbol, tier, day, price, filled, qty, hours, proceeds, exit_fee, reason in TRADES
        ]
        j.execute("UPDATE positions SET pnl = NULL, pnl_percent = NULL WHERE id = ?", (closed[-1].id,))


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite"
    build_journal(path)
    return path


@pytest.fixture
def closed(journal_path: Path) -> list[PositionRecord]:
    with Journal(journal_path) as j:
        return j.closed_positions()


def _row(rows: tuple[ProfitRow, ...], key: str) -> ProfitRow:
    return next(r for r in rows if r.key == key)


# ----- the pure aggregation -----


def test_total_row_adds_up_every_trade_with_a_pnl(closed: list[PositionRecord]) -> None:
    report = profit_report(closed)
    total = report.total
    assert total is not None and total.key == "TOTAL"
    assert report.skipped == 1
    assert (total.trades, total.wins, total.losses, total.draws) == (5, 2, 2, 1)
    assert total.win_rate_pct == D(40)
    assert total.pnl == D("-1.50")
    assert total.cost == D(600)
    assert total.return_on_cost_pct == D("-0.25")
    assert total.mean_return_pct == D("-0.6")
    assert total.fees == D("1.90")
    assert (total.best_pct, total.worst_pct) == (D("9.5"), D(-10))
    assert total.mean_hold_hours == pytest.approx(4.6)
    # The rows of any grouping add up to the total exactly (Decimal: no cent drifts away).
    for by in ("symbol", "tier", "reason", "day"):
        rows = profit_report(closed, by=by).rows
        assert sum((r.pnl for r in rows), D(0)) == total.pnl
        assert sum(r.trades for r in rows) == total.trades


def test_by_symbol_best_pnl_first(closed: list[PositionRecord]) -> None:
    rows = profit_report(closed, by="symbol").rows
    assert [r.key for r in rows] == ["BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD"]
    btc = rows[0]
    assert (btc.trades, btc.wins, btc.losses) == (2, 1, 1)
    assert btc.pnl == D("5.50") and btc.cost == D(200)
    assert btc.return_on_cost_pct == D("2.75") and btc.mean_return_pct == D("2.75")
    assert btc.fees == D("1.00")
    assert (btc.best_pct, btc.worst_pct) == (D("9.5"), D(-4))
    assert btc.mean_hold_hours == pytest.approx(3.0)
    eth = rows[1]  # the ETH row with P&L NULL is not in it
    assert (eth.trades, eth.pnl, eth.fees) == (1, D("3.00"), D("0.90"))
    assert eth.mean_hold_hours == pytest.approx(6.0)
    sol = rows[2]
    assert (sol.wins, sol.losses, sol.draws, sol.pnl) == (0, 0, 1, D(0))


def test_by_tier_names_the_untiered_external_position(closed: list[PositionRecord]) -> None:
    rows = profit_report(closed, by="tier").rows
    assert [r.key for r in rows] == ["triple_confirmed", "kronos_only", "-"]
    triple, kronos, external = rows
    assert (triple.trades, triple.wins, triple.pnl, triple.cost) == (2, 2, D("12.50"), D(300))
    assert triple.mean_return_pct == D("5.5")
    assert triple.return_on_cost_pct is not None
    assert triple.return_on_cost_pct.quantize(D("0.0001")) == D("4.1667")
    assert triple.fees == D("1.45")
    assert (kronos.trades, kronos.wins, kronos.losses, kronos.pnl) == (2, 0, 1, D("-4.00"))
    assert kronos.mean_return_pct == D(-2) and kronos.return_on_cost_pct == D(-2)
    assert (external.trades, external.pnl, external.fees) == (1, D("-10.00"), D(0))


def test_by_reason(closed: list[PositionRecord]) -> None:
    rows = profit_report(closed, by="reason").rows
    assert [r.key for r in rows] == ["trailing_stop", "max_hold", "stop_loss", "external"]
    max_hold = rows[1]
    assert (max_hold.trades, max_hold.wins, max_hold.losses, max_hold.draws) == (2, 1, 0, 1)
    assert max_hold.pnl == D("3.00") and max_hold.return_on_cost_pct == D(1)
    assert max_hold.mean_return_pct == D("0.75")
    assert max_hold.mean_hold_hours == pytest.approx(8.0)


def test_by_day_is_chronological_and_matches_the_daily_loss_limit(
    closed: list[PositionRecord], journal_path: Path
) -> None:
    rows = profit_report(closed, by="day").rows
    assert [r.key for r in rows] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert [r.pnl for r in rows] == [D("9.50"), D("-1.00"), D(-10)]
    assert rows[1].mean_return_pct == D("-1.25") and rows[2].return_on_cost_pct == D(-5)
    with Journal(journal_path) as j:  # the same days and sums as the trader's daily loss limit
        for r in rows:
            assert j.realized_pnl_for_day(datetime.fromisoformat(r.key).replace(tzinfo=UTC)) == r.pnl


def test_day_is_the_utc_date_of_the_exit_whatever_the_record_zone(closed: list[PositionRecord]) -> None:
    plus5 = timezone(timedelta(hours=5))
    late = dataclasses.replace(closed[0], exit_time=datetime(2025, 3, 2, 2, tzinfo=plus5))  # 03-01 21:00Z
    assert [r.key for r in profit_report([late], by="day").rows] == ["2025-03-01"]


def test_fees_count_the_coin_entry_fee_at_the_entry_price(closed: list[PositionRecord]) -> None:
    first = closed[0]
    assert first.entry_fee == D("0.0025") and first.exit_fee == D("0.30")
    assert fees_usd(first) == D("0.55")
    # ...and they are already inside P&L: proceeds (after the exit fee) - cost of the whole filled qty.
    assert first.pnl == first.proceeds - first.entry_cost  # type: ignore[operator]


def test_positions_without_pnl_are_skipped_and_counted(closed: list[PositionRecord]) -> None:
    only_broken = [p for p in closed if p.pnl is None]
    assert len(only_broken) == 1
    report = profit_report(only_broken)
    assert (report.rows, report.total, report.skipped) == ((), None, 1)
    assert table_lines(report) == []
    first_broken_too = [dataclasses.replace(closed[0], pnl=None), *closed[1:]]
    more = profit_report(first_broken_too)
    assert more.skipped == 2 and more.total is not None
    assert (more.total.trades, more.total.pnl) == (4, D("-11.00"))


def test_unknown_grouping_is_refused(closed: list[PositionRecord]) -> None:
    with pytest.raises(ValueError, match="cannot group by 'week'"):
        profit_report(closed, by="week")


def test_report_document_keeps_full_precision_as_strings(closed: list[PositionRecord]) -> None:
    tier = report_document(profit_report(closed, by="tier"))
    triple = tier["rows"][0]
    assert triple["pnl_usd"] == "12.50" and isinstance(triple["fees_usd"], str)
    assert triple["return_on_cost_pct"].startswith("4.16666666666")  # not rounded to cents


# ----- the command -----


@pytest.fixture
def config(journal_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KRONOS_BOT__JOURNAL__PATH", str(journal_path))
    return str(SHIPPED_CONFIG)


def test_text_table_via_the_cli(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profit", "--config", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "realized P&L by symbol: 5 closed trades (1 closed without a P&L, not counted)"
    header, *body = lines[1:]
    assert header.split()[:3] == ["symbol", "trades", "wins"]
    assert "P&L USD" in header and "fees USD" in header
    assert [line.split()[0] for line in body] == [
        "BTC/USD",
        "ETH/USD",
        "SOL/USD",
        "DOGE/USD",
        "-" * len(header),
        "TOTAL",
    ]
    assert body[0].split() == [
        "BTC/USD",
        "2",
        "1",
        "1",
        "50.00",
        "5.50",
        "2.75",
        "2.75",
        "1.00",
        "9.50",
        "-4.00",
        "3.0",
    ]
    assert body[2].split()[5] == "0.00"  # SOL's even trade: never "-0.00"
    assert body[-1].split() == [
        "TOTAL",
        "5",
        "2",
        "2",
        "40.00",
        "-1.50",
        "-0.60",
        "-0.25",
        "1.90",
        "9.50",
        "-10.00",
        "4.6",
    ]
    assert len({len(line) for line in [header, *body]}) == 1  # aligned


def test_since_and_symbol_filter_the_exits(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profit", "--config", config, "--since", "2025-03-02", "--by", "day", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["since"] == "2025-03-02T00:00:00+00:00"
    assert [r["key"] for r in doc["rows"]] == ["2025-03-02", "2025-03-03"]
    assert doc["total"]["trades"] == 4 and doc["total"]["pnl_usd"] == "-11.00" and doc["skipped"] == 1
    assert main(["profit", "--config", config, "--symbol", "btc", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["symbol"] == "BTC/USD" and [r["key"] for r in doc["rows"]] == ["BTC/USD"]
    # An age counts back from now: the 2025 trades are all older than a week.
    assert main(["profit", "--config", config, "--since", "7d"]) == 0
    assert capsys.readouterr().out.startswith("no closed trades since ")


def test_json_shape_money_as_strings(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profit", "--config", config, "--by", "reason", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"since", "symbol", "by", "rows", "total", "skipped"}
    assert doc["by"] == "reason" and doc["since"] is None and doc["symbol"] is None
    total = doc["total"]
    assert set(total) == {
        "key",
        "trades",
        "wins",
        "losses",
        "draws",
        "win_rate_pct",
        "pnl_usd",
        "cost_usd",
        "mean_return_pct",
        "return_on_cost_pct",
        "fees_usd",
        "best_pct",
        "worst_pct",
        "mean_hold_hours",
    }
    assert (D(total["pnl_usd"]), D(total["fees_usd"]), D(total["cost_usd"])) == (D("-1.50"), D("1.90"), D(600))
    assert total["trades"] == 5 and total["mean_hold_hours"] == pytest.approx(4.6)
    assert all(isinstance(r["pnl_usd"], str) for r in doc["rows"])


def test_empty_journal_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.sqlite"
    Journal(empty).close()
    monkeypatch.setenv("KRONOS_BOT__JOURNAL__PATH", str(empty))
    assert main(["profit", "--config", str(SHIPPED_CONFIG)]) == 0
    assert capsys.readouterr().out == f"no closed trades in {empty}\n"
    assert main(["profit", "--config", str(SHIPPED_CONFIG), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] is None


def test_missing_journal_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "nowhere" / "journal.sqlite"
    monkeypatch.setenv("KRONOS_BOT__JOURNAL__PATH", str(missing))
    assert main(["profit", "--config", str(SHIPPED_CONFIG)]) == 0
    assert capsys.readouterr().out.startswith(f"no journal at {missing}")
    assert not missing.exists()  # reading never creates one
