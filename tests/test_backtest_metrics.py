"""Pure pieces of the backtest: performance metrics, the progress line, the summary of hand-made runs."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kronos_bot.backtest import metrics
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.progress import Progress
from kronos_bot.backtest.replay import EquityPoint
from kronos_bot.backtest.rows import trade_row
from kronos_bot.backtest.runner import BacktestRun
from kronos_bot.backtest.summary import build_summary
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.stops import initial_state
from tests.backtest_support import settings

D = Decimal
T = datetime(2025, 1, 1, tzinfo=UTC)


def test_return_drawdown_sharpe_on_a_hand_made_curve() -> None:
    curve = [100.0, 110.0, 99.0, 121.0]
    assert metrics.period_return(curve) == pytest.approx(0.21)
    assert metrics.drawdowns(curve) == pytest.approx([0, 0, 0.1, 0])
    assert metrics.max_drawdown(curve) == pytest.approx(0.1)
    returns = metrics.simple_returns(curve)
    assert returns == pytest.approx([0.1, -0.1, 121 / 99 - 1])
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert metrics.sharpe(returns) == pytest.approx(mean / std * math.sqrt(8760))
    assert metrics.sharpe([0.01, 0.01]) is None and metrics.sharpe([0.01]) is None


def test_win_rate_and_exposure() -> None:
    assert metrics.win_rate([1.0, -2.0, 0.0, 3.0]) == 0.5 and metrics.win_rate([]) is None
    assert metrics.exposure([0, 50, 100, 0], [100, 100, 200, 100]) == (0.5, pytest.approx((0.5 + 0.5) / 4))


def test_progress_bar_draws_on_a_terminal_only() -> None:
    stream = io.StringIO()
    bar = Progress(4, "backtest", stream=stream, enabled=True, min_interval=0.0)
    bar.update(1, note="forecasts: 1 computed")
    bar.update(4, note="forecasts: 4 computed")
    bar.close()
    drawn = stream.getvalue()
    assert "backtest" in drawn and "4/4" in drawn and "forecasts: 4 computed" in drawn
    quiet = io.StringIO()
    silent = Progress(3, stream=quiet)  # not a TTY: nothing at all
    silent.update(1)
    silent.close()
    assert quiet.getvalue() == ""


def test_summary_of_a_hand_made_run(tmp_path) -> None:
    s = settings(["BTC/USD"])
    journal = Journal(":memory:")
    pos = journal.open_position(
        symbol="BTC/USD",
        entry_time=T,
        entry_price=D(100),
        entry_filled_qty=D(1),
        entry_cost=D(100),
        qty=D("0.9975"),
        stop=initial_state(D(100), T, s.exits),
        tier="kronos_only",
    )
    closed = journal.close_position(
        pos.id,
        exit_time=T + timedelta(hours=3),
        exit_price=D(110),
        exit_qty=D("0.9975"),
        reason="trailing_stop",
        exit_fee=D("0.2743125"),
        proceeds=D("109.4506875"),
    )
    still = journal.open_position(
        symbol="BTC/USD",
        entry_time=T + timedelta(hours=4),
        entry_price=D(100),
        entry_filled_qty=D(1),
        entry_cost=D(100),
        qty=D(1),
        stop=initial_state(D(100), T, s.exits),
        tier="triple_confirmed",
    )
    equity = [EquityPoint(T + timedelta(hours=i), D(v), D(v), D(0)) for i, v in enumerate([10_000, 10_100, 10_050])]
    run = BacktestRun(
        settings=s,
        period=Period(T, T + timedelta(hours=2)),
        equity=equity,
        positions=[closed, still],
        start_marks={"BTC/USD": D(100)},
        end_marks={"BTC/USD": D(120)},
        benchmark=[D(10_000), D(11_000), D(12_000)],
    )
    summary = build_summary(run)
    assert summary["trades"]["per_tier"] == {"kronos_only": 1, "triple_confirmed": 1}
    assert summary["trades"]["win_rate"] == 1.0 and summary["trades"]["avg_hold_hours"] == 3.0
    assert summary["fees_usd"] == str((D("0.0025") * 100 + D("0.2743125")).quantize(D("0.01")))
    assert summary["buy_and_hold"]["per_symbol"] == {"BTC/USD": 0.2} and summary["buy_and_hold"]["equal_weight"] == 0.2
    assert summary["period_return"] == 0.005 and summary["max_drawdown"] == pytest.approx(50 / 10_100, abs=1e-6)
    row = trade_row(still, D(120))
    assert (row["exit_reason"], row["exit_price"], row["pnl"]) == ("open", D(120), D("20.0000"))
    journal.close()
