"""Whole backtests with the tiny Kronos on real bar slices: determinism, no look-ahead, the disk cache, reports."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from kronos_bot import cli
from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import BarStore, load_csv_dir
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.report import write_backtest_report
from kronos_bot.backtest.rows import DECISION_COLUMNS, TRADE_COLUMNS
from kronos_bot.backtest.runner import BacktestRun, run_backtest
from tests.backtest_support import FIXTURE_BARS, TINY_BTC_ETH_ARGS, CountingForecaster, settings
from tests.conftest import SHIPPED_CONFIG
from tests.forecaster_support import tiny_model

HOUR = timedelta(hours=1)
SYMBOLS = ("BTC/USD", "ETH/USD")
PERIOD = Period(datetime(2024, 12, 14, tzinfo=UTC), datetime(2024, 12, 18, 12, tzinfo=UTC))  # 108 h
CUT = PERIOD.start + 50 * HOUR


def frames() -> dict:
    return load_csv_dir(FIXTURE_BARS, SYMBOLS)


def backtest(bars: dict, cache: CacheStore, forecaster=None, **sections) -> BacktestRun:
    return run_backtest(
        settings(SYMBOLS, **sections), BarStore(bars), PERIOD, forecaster=forecaster or tiny_model(), cache=cache
    )


def trades_of(run: BacktestRun) -> list[tuple]:
    return [
        (p.symbol, p.tier, p.entry_time, p.entry_price, p.qty, p.exit_time, p.exit_price, p.exit_reason, p.pnl)
        for p in run.positions
    ]


def test_a_seeded_run_is_deterministic() -> None:
    first = backtest(frames(), CacheStore(":memory:"))
    second = backtest(frames(), CacheStore(":memory:"))
    assert first.decisions == second.decisions
    assert trades_of(first) == trades_of(second)
    assert [p.equity for p in first.equity] == [p.equity for p in second.equity]
    assert first.forecasts["computed"] == len(SYMBOLS) * PERIOD.hours
    assert any(d["action"] == "ENTER" for d in first.decisions)  # the run actually trades


@pytest.mark.parametrize("change", ["prices", "nan"])
def test_bars_after_t_do_not_change_any_decision_at_or_before_t(change: str) -> None:
    original = backtest(frames(), CacheStore(":memory:"))
    altered = frames()
    for frame in altered.values():
        later = frame.index >= CUT  # bars that close after CUT (the bar opening at CUT closes at CUT + 1 h)
        if change == "prices":
            frame.loc[later, ["open", "high", "low", "close"]] *= 1.37
        else:
            frame.loc[frame.index[np.argmax(later) + 2], "close"] = float("nan")
    changed = backtest(altered, CacheStore(":memory:"))
    upto = [d for d in original.decisions if d["time"] <= CUT.isoformat()]
    assert upto == [d for d in changed.decisions if d["time"] <= CUT.isoformat()]
    assert original.decisions != changed.decisions  # the change did matter after CUT


def test_the_disk_cache_answers_a_rerun_without_the_model(tmp_path: Path) -> None:
    counting = CountingForecaster(tiny_model())
    with CacheStore.in_dir(tmp_path) as cache:
        cold = backtest(frames(), cache, counting)
    assert counting.calls > 0
    rerun = CountingForecaster(tiny_model())
    with CacheStore.in_dir(tmp_path) as cache:
        warm = backtest(frames(), cache, rerun)
        stricter = backtest(frames(), cache, rerun, gates={"kronos": {"min_confidence": 0.9}})
    assert rerun.calls == 0
    assert warm.decisions == cold.decisions and trades_of(warm) == trades_of(cold)
    assert warm.forecasts["cached"] == cold.forecasts["computed"] and warm.forecasts["computed"] == 0
    assert warm.memo["bars_misses"] == 0 and warm.memo["technical_misses"] == 0
    assert stricter.decisions != cold.decisions  # other thresholds, same cached forecasts


def test_report_files_exist_and_parse(tmp_path: Path) -> None:
    run = backtest(frames(), CacheStore(":memory:"))
    summary = write_backtest_report(run, tmp_path / "out")
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))
    assert summary["period"]["hours"] == PERIOD.hours and set(summary["buy_and_hold"]["per_symbol"]) == set(SYMBOLS)
    assert summary["trades"]["total"] == len(run.positions) and "NO_DATA" in summary["sentiment"]
    for name, columns, count in (
        ("trades.csv", TRADE_COLUMNS, len(run.positions)),
        ("decisions.csv", DECISION_COLUMNS, len(SYMBOLS) * PERIOD.hours),
    ):
        with (out / name).open() as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
        assert tuple(reader.fieldnames or ()) == columns and len(rows) == count
    for chart in ("equity.png", "prices.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "NO_DATA" in page and "<script" not in page
    assert "Realized P&amp;L per symbol" in page and f"Trades ({len(run.positions)})" in page


def test_backtest_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--config",
        str(SHIPPED_CONFIG),
        "backtest",
        "--data",
        str(FIXTURE_BARS),
        "--from",
        "2024-12-20",
        "--to",
        "2024-12-21",
        *TINY_BTC_ETH_ARGS,
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--seed",
        "7",
    ]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "backtest 2024-12-20T00:00:00+00:00 -> 2024-12-22T00:00:00+00:00 (48 h)" in printed
    assert "96 computed" in printed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kronos"]["sampling"]["seed"] == 7
    assert cli.main(args) == 0
    assert "0 computed, 96 cached" in capsys.readouterr().out


def test_backtest_command_with_alpaca_history(
    fake_alpaca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for symbol, frame in frames().items():
        fake_alpaca.market.set_bars(symbol, frame)
    monkeypatch.setenv("KRONOS_BOT__BARS__DATA_URL_OVERRIDE", fake_alpaca.base_url)
    args = [
        "--config",
        str(SHIPPED_CONFIG),
        "backtest",
        "--data",
        "alpaca",
        "--from",
        "2024-12-20T00:00",
        "--to",
        "2024-12-20T12:00",
        *TINY_BTC_ETH_ARGS,
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert cli.main(args) == 0
    assert "(12 h), BTC/USD ETH/USD" in capsys.readouterr().out
    assert (tmp_path / "cache" / "alpaca" / "BTC_USD_1h.csv").is_file()
    fetched = len(fake_alpaca.requests)
    assert cli.main(args) == 0  # history and forecasts both come from the cache now
    assert len(fake_alpaca.requests) == fetched
    assert "0 computed, 24 cached" in capsys.readouterr().out
