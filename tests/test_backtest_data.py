"""History for backtests: periods, the look-ahead-safe bar store, Alpaca history with its cache, news archives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from kronos_bot.backtest.data import BarStore, fetch_alpaca_history, frame_digest, input_digest, load_csv_dir
from kronos_bot.backtest.news_archive import ArchiveNewsProvider, load_news_archive
from kronos_bot.backtest.options import backtest_settings
from kronos_bot.backtest.period import Period, parse_time
from kronos_bot.config import Settings
from kronos_bot.domain import parse_symbol
from kronos_bot.gates.forecast_cache import series_input
from kronos_bot.market.bars import load_bars_csv
from tests.backtest_support import FIXTURE_BARS, fixture_store
from tests.fakealpaca.market import BARS_PATH

HOUR = timedelta(hours=1)


def test_period_parsing_and_boundaries() -> None:
    assert parse_time("2024-07-01") == datetime(2024, 7, 1, tzinfo=UTC)
    assert parse_time("2024-12-31", end_of_day=True) == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_time("2024-07-01T05:30") == datetime(2024, 7, 1, 5, tzinfo=UTC)
    assert parse_time("2024-07-01T05:00+02:00") == datetime(2024, 7, 1, 3, tzinfo=UTC)
    period = Period(parse_time("2024-07-01"), parse_time("2024-07-01T03:00"))
    assert period.hours == 3 and len(list(period.boundaries())) == 4
    with pytest.raises(ValueError):
        Period(parse_time("2024-07-02"), parse_time("2024-07-01"))
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_window_holds_only_bars_closed_at_t_and_the_live_fetch_span() -> None:
    store = fixture_store(["BTC/USD"])
    settings = Settings()
    t = datetime(2024, 12, 20, 12, tzinfo=UTC)
    window = store.window("BTC/USD", t, settings.bars).frame
    assert window.index[-1] == pd.Timestamp(t - HOUR)  # closed exactly at t; the bar opening at t is absent
    assert len(window) == settings.bars.count + settings.bars.max_missing_bars + 6
    mid = datetime(2024, 12, 20, 12, 30, tzinfo=UTC)  # between boundaries: the 12:00 bar is still forming
    assert store.window("BTC/USD", mid, settings.bars).frame.index[-1] == pd.Timestamp(t - HOUR)


def test_mark_is_the_open_at_t_else_the_last_close() -> None:
    frame = load_bars_csv(FIXTURE_BARS / "BTC_USD_1h.csv")
    t = frame.index[100].to_pydatetime()
    store = BarStore({"BTC/USD": frame.drop(frame.index[100])})
    assert store.mark("BTC/USD", frame.index[101].to_pydatetime()) == Decimal(repr(float(frame["open"].iloc[101])))
    assert store.mark("BTC/USD", t) == Decimal(
        repr(float(frame["close"].iloc[99]))
    )  # no bar at t: the last close stands


def test_digest_of_a_frame_equals_digest_of_its_forecaster_input() -> None:
    frame = load_bars_csv(FIXTURE_BARS / "ETH_USD_1h.csv").iloc[:60]
    assert frame_digest(frame) == input_digest(series_input("ETH/USD", frame))
    changed = frame.copy()
    changed.iloc[-1, 3] += 0.01
    assert frame_digest(changed) != frame_digest(frame)


def test_unsorted_or_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"SOL_USD_1h\.csv"):
        load_csv_dir(tmp_path, ["SOL/USD"])
    frame = load_bars_csv(FIXTURE_BARS / "BTC_USD_1h.csv").iloc[:5]
    with pytest.raises(ValueError, match="strictly increasing"):
        BarStore({"BTC/USD": frame.iloc[[0, 2, 1, 3]]})


def test_backtest_settings_apply_overrides_and_force_the_sim_broker() -> None:
    base = Settings(broker={"kind": "alpaca"})
    s = backtest_settings(base, symbols=["btc", "ETHUSD"], samples=8, seed=None, fee_percent=0.1)
    assert s.symbols == ["BTC/USD", "ETH/USD"] and s.effective_broker() == "sim"
    assert (s.gates.kronos.samples, s.gates.kronos.seed, s.broker.sim.fee_percent) == (8, 0, 0.1)
    assert base.gates.kronos.samples == 32 and base.broker.kind == "alpaca"  # the original is untouched (default 32)
    with pytest.raises(ValueError):
        backtest_settings(base, samples=0)
    assert parse_symbol("doge") == "DOGE/USD"


def test_alpaca_history_is_fetched_once_then_served_from_the_csv_cache(fake_alpaca, tmp_path: Path) -> None:
    frames = {s: load_bars_csv(FIXTURE_BARS / f"{s.replace('/', '_')}_1h.csv") for s in ("BTC/USD", "ETH/USD")}
    for symbol, frame in frames.items():
        fake_alpaca.market.set_bars(symbol, frame)
    settings = Settings(bars={"data_url_override": fake_alpaca.base_url, "backoff_seconds": 0})
    start, end = datetime(2024, 12, 15, tzinfo=UTC), datetime(2024, 12, 20, tzinfo=UTC)

    got = fetch_alpaca_history(list(frames), start, end, settings, tmp_path)
    for symbol, frame in frames.items():
        expected = frame[(frame.index >= start) & (frame.index < end)]
        pd.testing.assert_frame_equal(got[symbol], expected, check_freq=False, check_index_type=False)
    first = len(fake_alpaca.requests_to(BARS_PATH))
    assert first >= 1

    again = fetch_alpaca_history(list(frames), start, end, settings, tmp_path)
    assert len(fake_alpaca.requests_to(BARS_PATH)) == first  # nothing fetched again
    pd.testing.assert_frame_equal(again["BTC/USD"], got["BTC/USD"], check_freq=False, check_index_type=False)

    later = fetch_alpaca_history(list(frames), start, end + 24 * HOUR, settings, tmp_path)
    new_requests = fake_alpaca.requests_to(BARS_PATH)[first:]
    assert new_requests and all(parse_time(r.arg("start")) >= end for r in new_requests)  # only the missing day
    assert later["ETH/USD"].index[-1] == pd.Timestamp(end + 23 * HOUR)


def test_news_archive_never_serves_articles_from_the_future(tmp_path: Path) -> None:
    now = datetime(2024, 12, 20, 12, tzinfo=UTC)
    lines = [
        {"id": 1, "created_at": "2024-12-20T11:00:00Z", "headline": "Bitcoin rallies", "symbols": ["BTCUSD"]},
        {"id": 2, "created_at": "2024-12-20T12:30:00Z", "headline": "Bitcoin crashes", "symbols": ["BTC/USD"]},
        {"id": 3, "created_at": "2024-12-20T10:00:00Z", "headline": "Ether news", "symbols": ["ETH"]},
    ]
    path = tmp_path / "news.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    provider = ArchiveNewsProvider(load_news_archive(path))
    got = provider.fetch(["BTC/USD", "ETH/USD"], now - 24 * HOUR, now, 50)
    assert [a.id for a in got] == ["1", "3"] and got[0].symbols == ("BTC/USD",) and got[1].symbols == ("ETH/USD",)
    path.write_text('{"id": 1, "headline": "no time"}\n')
    with pytest.raises(ValueError, match=r"news\.jsonl:1"):
        load_news_archive(path)
