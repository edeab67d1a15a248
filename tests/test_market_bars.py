"""Bars through alpaca-py against our fake Alpaca over real HTTP: shapes, pagination, faults, retries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
import structlog
from structlog.testing import capture_logs

from kronos_bot.config import Settings
from kronos_bot.market import AlpacaMarketData, BarsProblem, fetch_closed_bars, latest_prices, load_bars_csv
from kronos_bot.retry import RetryPolicy, parse_retry_after
from tests.conftest import FIXTURES
from tests.fakealpaca import FakeAlpaca, Fault


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Another test may have configured logging at WARNING; capture_logs keeps the level filter."""
    structlog.reset_defaults()


SYMBOLS = ["BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD"]
BARS_PATH = r"/v1beta3/crypto/us/bars"
# The fixture CSVs end with the bar opening 2024-12-31T23:00Z; at 23:10 that bar is still in progress.
NOW = datetime(2024, 12, 31, 23, 10, tzinfo=UTC)
LAST_CLOSED = pd.Timestamp("2024-12-31T22:00Z")


def csv_bars(symbol: str) -> pd.DataFrame:
    return load_bars_csv(FIXTURES / "bars" / f"{symbol.replace('/', '_')}_1h.csv")


@pytest.fixture
def market(fake_alpaca: FakeAlpaca) -> FakeAlpaca:
    for symbol in SYMBOLS:
        fake_alpaca.market.set_bars(symbol, csv_bars(symbol))
    return fake_alpaca


def settings_for(fake: FakeAlpaca, **bars: Any) -> Settings:
    return Settings(bars={"data_url_override": fake.base_url, "backoff_seconds": 1.0, **bars})


class Sleeps(list[float]):
    """Records requested waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_last_closed_bars_per_symbol_with_one_request_for_all_symbols(market: FakeAlpaca) -> None:
    result = fetch_closed_bars(SYMBOLS, settings_for(market), now=NOW, sleep=Sleeps())

    for symbol in SYMBOLS:
        df = result[symbol]
        assert isinstance(df, pd.DataFrame), df
        expected = csv_bars(symbol).loc[:LAST_CLOSED].iloc[-60:]
        assert list(df.columns) == ["open", "high", "low", "close", "volume"]
        assert all(dtype == "float64" for dtype in df.dtypes)
        assert str(df.index.tz) == "UTC" and df.index.name == "timestamp"
        assert len(df) == 60 and df.index[-1] == LAST_CLOSED
        pd.testing.assert_frame_equal(df, expected, check_freq=False)
    requests = market.requests_to(BARS_PATH)
    assert len(requests) == 1  # everything fits one page: ONE request for all symbols
    query = requests[0]
    assert query.arg("symbols") == ",".join(SYMBOLS)
    assert query.arg("timeframe") == "1Hour"
    # start covers count + max_missing_bars + margin hours before the current hour
    assert datetime.fromisoformat(query.arg("start")) == datetime(2024, 12, 31, 23, tzinfo=UTC) - timedelta(hours=69)


def test_in_progress_bar_is_served_but_dropped(market: FakeAlpaca) -> None:
    assert market.market.bars["BTC/USD"][-1].t == datetime(2024, 12, 31, 23, tzinfo=UTC)
    df = fetch_closed_bars(["BTC/USD"], settings_for(market), now=NOW)["BTC/USD"]
    assert isinstance(df, pd.DataFrame)
    assert pd.Timestamp("2024-12-31T23:00Z") not in df.index
    # At 00:00:00 exactly, the 23:00 bar has closed and becomes the last one.
    df = fetch_closed_bars(["BTC/USD"], settings_for(market), now=datetime(2025, 1, 1, tzinfo=UTC))["BTC/USD"]
    assert isinstance(df, pd.DataFrame) and df.index[-1] == pd.Timestamp("2024-12-31T23:00Z")


def test_pagination_follows_next_page_token(market: FakeAlpaca) -> None:
    market.market.max_page_size = 25
    result = fetch_closed_bars(SYMBOLS, settings_for(market), now=NOW)
    requests = market.requests_to(BARS_PATH)
    # 4 symbols x 70 bars in the window at 25 per page
    assert len(requests) == 12
    assert requests[0].arg("page_token") is None and all(r.arg("page_token") for r in requests[1:])
    for symbol in SYMBOLS:
        expected = csv_bars(symbol).loc[:LAST_CLOSED].iloc[-60:]
        pd.testing.assert_frame_equal(result[symbol], expected, check_freq=False)


def test_gaps_forward_filled_or_rejected_per_symbol(market: FakeAlpaca) -> None:
    btc_gaps = [datetime(2024, 12, 31, 10, tzinfo=UTC), datetime(2024, 12, 31, 11, tzinfo=UTC)]
    market.market.remove_bars("BTC/USD", *btc_gaps)
    market.market.remove_bars("ETH/USD", *(datetime(2024, 12, 31, h, tzinfo=UTC) for h in (3, 5, 7, 9)))
    with capture_logs() as logs:
        result = fetch_closed_bars(SYMBOLS, settings_for(market, max_missing_bars=3), now=NOW)

    btc = result["BTC/USD"]
    assert isinstance(btc, pd.DataFrame) and len(btc) == 60
    before = btc.loc[pd.Timestamp("2024-12-31T09:00Z")]
    for ts in btc_gaps:
        row = btc.loc[pd.Timestamp(ts)]
        assert row["volume"] == 0.0
        assert row["open"] == row["high"] == row["low"] == row["close"] == before["close"]
    filled = events(logs, "data.gap_filled")
    assert filled == [
        {
            "event": "data.gap_filled",
            "log_level": "info",
            "symbol": "BTC/USD",
            "hours": 2,
            "filled": ["2024-12-31T10:00Z", "2024-12-31T11:00Z"],
        }
    ]

    eth = result["ETH/USD"]
    assert isinstance(eth, BarsProblem) and eth.reason == "too_many_missing"
    invalid = events(logs, "data.invalid")
    assert [(e["symbol"], e["reason"]) for e in invalid] == [("ETH/USD", "too_many_missing")]
    assert isinstance(result["SOL/USD"], pd.DataFrame) and isinstance(result["DOGE/USD"], pd.DataFrame)


def test_missing_policy_reject_skips_any_gap(market: FakeAlpaca) -> None:
    market.market.remove_bars("SOL/USD", datetime(2024, 12, 31, 12, tzinfo=UTC))
    result = fetch_closed_bars(SYMBOLS, settings_for(market, missing_policy="reject"), now=NOW)
    assert isinstance(result["SOL/USD"], BarsProblem) and result["SOL/USD"].reason == "gaps_rejected"
    assert isinstance(result["BTC/USD"], pd.DataFrame)


def test_stale_symbol_skipped_others_go_on(market: FakeAlpaca) -> None:
    doge = csv_bars("DOGE/USD").loc[: pd.Timestamp("2024-12-31T20:00Z")]
    market.market.set_bars("DOGE/USD", doge)  # last bar closed 21:00, 130 min before NOW
    with capture_logs() as logs:
        result = fetch_closed_bars(SYMBOLS, settings_for(market), now=NOW)
    assert isinstance(result["DOGE/USD"], BarsProblem) and result["DOGE/USD"].reason == "stale"
    assert "130 min ago" in result["DOGE/USD"].detail
    assert [e["symbol"] for e in events(logs, "data.invalid")] == ["DOGE/USD"]
    assert all(isinstance(result[s], pd.DataFrame) for s in SYMBOLS if s != "DOGE/USD")


def test_symbol_unknown_to_alpaca_is_skipped(market: FakeAlpaca) -> None:
    result = fetch_closed_bars(["BTC/USD", "XYZ/USD"], settings_for(market), now=NOW)
    assert isinstance(result["BTC/USD"], pd.DataFrame)
    assert isinstance(result["XYZ/USD"], BarsProblem) and result["XYZ/USD"].reason == "no_bars"


def test_429_then_success_honours_retry_after(market: FakeAlpaca) -> None:
    handle = market.fail(BARS_PATH, Fault.rate_limited(retry_after=7), times=1)
    sleeps = Sleeps()
    with capture_logs() as logs:
        result = fetch_closed_bars(SYMBOLS, settings_for(market), now=NOW, sleep=sleeps)
    assert all(isinstance(result[s], pd.DataFrame) for s in SYMBOLS)
    assert handle.hits == 1 and sleeps == [7.0]  # Retry-After (7 s) beats the 1 s backoff
    assert [r.status for r in market.requests_to(BARS_PATH)] == [429, 200]
    retry = events(logs, "data.retry")[0]
    assert retry["error"] == "HTTP 429 (rate limited)" and retry["retry_after"] == 7.0


def test_429_shorter_retry_after_than_backoff_uses_backoff(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.rate_limited(retry_after=1), times=2)
    sleeps = Sleeps()
    result = fetch_closed_bars(["BTC/USD"], settings_for(market, backoff_seconds=3.0), now=NOW, sleep=sleeps)
    assert isinstance(result["BTC/USD"], pd.DataFrame)
    assert sleeps == [3.0, 6.0]


def test_500_then_success(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.server_error(500), times=1)
    sleeps = Sleeps()
    result = fetch_closed_bars(SYMBOLS, settings_for(market), now=NOW, sleep=sleeps)
    assert all(isinstance(result[s], pd.DataFrame) for s in SYMBOLS)
    assert sleeps == [1.0]
    assert [r.status for r in market.requests_to(BARS_PATH)] == [500, 200]


def test_retry_is_per_page_not_per_call(market: FakeAlpaca) -> None:
    market.market.max_page_size = 100
    market.fail(BARS_PATH, Fault.server_error(502), times=1, when=lambda r: r.arg("page_token") is not None)
    result = fetch_closed_bars(SYMBOLS, settings_for(market), now=NOW, sleep=Sleeps())
    assert all(isinstance(result[s], pd.DataFrame) for s in SYMBOLS)
    requests = market.requests_to(BARS_PATH)
    assert [r.status for r in requests] == [200, 502, 200, 200]  # 280 bars at 100 per page
    tokens = [r.arg("page_token") for r in requests]
    assert tokens[0] is None and tokens[1] == tokens[2] is not None  # page 2 retried, page 1 not refetched


def test_persistent_failure_skips_every_symbol_after_max_attempts(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.server_error(503), times=None)
    sleeps = Sleeps()
    with capture_logs() as logs:
        result = fetch_closed_bars(SYMBOLS, settings_for(market, max_attempts=4), now=NOW, sleep=sleeps)
    for symbol in SYMBOLS:
        problem = result[symbol]
        assert isinstance(problem, BarsProblem) and problem.reason == "fetch_failed"
        assert problem.detail == "HTTP 503 after 4 attempt(s)"
    # Exactly our 4 attempts: alpaca-py's own retry loop is off (no 4 x 4 multiplication).
    assert len(market.requests_to(BARS_PATH)) == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(events(logs, "data.fetch_failed")) == 1
    assert events(logs, "data.invalid") == []  # the one fetch_failed line names every symbol
    assert events(logs, "data.fetch_failed")[0]["symbols"] == list(SYMBOLS)


def test_persistent_429_is_not_retried_by_alpaca_py_as_well(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.rate_limited(retry_after=0), times=None)
    result = fetch_closed_bars(["BTC/USD"], settings_for(market, max_attempts=2), now=NOW, sleep=Sleeps())
    assert isinstance(result["BTC/USD"], BarsProblem)
    assert len(market.requests_to(BARS_PATH)) == 2


def test_client_error_is_not_retried(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.http_status(403, "forbidden"), times=None)
    sleeps = Sleeps()
    result = fetch_closed_bars(["BTC/USD"], settings_for(market), now=NOW, sleep=sleeps)
    problem = result["BTC/USD"]
    assert isinstance(problem, BarsProblem) and problem.reason == "fetch_failed"
    assert problem.detail.startswith("HTTP 403") and sleeps == []
    assert len(market.requests_to(BARS_PATH)) == 1


def test_malformed_json_is_retried_then_skipped(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.malformed_json(), times=1)
    result = fetch_closed_bars(["BTC/USD"], settings_for(market), now=NOW, sleep=Sleeps())
    assert isinstance(result["BTC/USD"], pd.DataFrame)

    market.fail(BARS_PATH, Fault.malformed_json(), times=None)
    result = fetch_closed_bars(["BTC/USD"], settings_for(market, max_attempts=2), now=NOW, sleep=Sleeps())
    problem = result["BTC/USD"]
    assert isinstance(problem, BarsProblem) and problem.detail == "malformed JSON after 2 attempt(s)"


def test_unexpected_json_shape_is_skipped_not_guessed(market: FakeAlpaca) -> None:
    from tests.fakealpaca import Response

    market.server.add_route("GET", BARS_PATH, lambda r: Response(json={"bars": {"BTC/USD": [{"t": "x"}]}}))
    result = fetch_closed_bars(["BTC/USD"], settings_for(market), now=NOW, sleep=Sleeps())
    assert isinstance(result["BTC/USD"], BarsProblem) and result["BTC/USD"].reason == "fetch_failed"


def test_slow_response_beyond_timeout_is_retried(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.slow(5.0), times=1)
    sleeps = Sleeps()
    started = time.monotonic()
    with capture_logs() as logs:
        result = fetch_closed_bars(SYMBOLS, settings_for(market, request_timeout_seconds=0.3), now=NOW, sleep=sleeps)
    assert time.monotonic() - started < 3.0
    assert all(isinstance(result[s], pd.DataFrame) for s in SYMBOLS)
    assert events(logs, "data.retry")[0]["error"].startswith("timed out (read) at 127.0.0.1:")


def test_dropped_connection_is_retried(market: FakeAlpaca) -> None:
    market.fail(BARS_PATH, Fault.disconnect(), times=1)
    result = fetch_closed_bars(["ETH/USD"], settings_for(market), now=NOW, sleep=Sleeps())
    assert isinstance(result["ETH/USD"], pd.DataFrame)


def test_keys_are_sent_only_when_configured(market: FakeAlpaca) -> None:
    fetch_closed_bars(["BTC/USD"], settings_for(market), now=NOW)
    assert "apca-api-key-id" not in market.requests[-1].headers
    keyed = Settings(
        ALPACA_API_KEY="key-id-1234", ALPACA_SECRET_KEY="secret-5678", bars={"data_url_override": market.base_url}
    )
    fetch_closed_bars(["BTC/USD"], keyed, now=NOW)
    assert market.requests[-1].headers["apca-api-key-id"] == "key-id-1234"


def test_latest_prices_as_decimal(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.market.set_latest_trade("BTC/USD", 93576.1)
    fake_alpaca.market.set_latest_trade("DOGE/USD", 0.31664)
    with capture_logs() as logs:
        prices = latest_prices(["BTC/USD", "DOGE/USD", "SOL/USD"], settings_for(fake_alpaca))
    assert prices == {"BTC/USD": Decimal("93576.1"), "DOGE/USD": Decimal("0.31664")}
    assert [e["symbol"] for e in events(logs, "data.price_missing")] == ["SOL/USD"]
    request = fake_alpaca.requests_to(r"/v1beta3/crypto/us/latest/trades")[0]
    assert request.arg("symbols") == "BTC/USD,DOGE/USD,SOL/USD"


def test_latest_prices_retry_and_failure(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.market.set_latest_trade("ETH/USD", 3332.5)
    fake_alpaca.fail(r".*/latest/trades", Fault.rate_limited(retry_after=2), times=1)
    sleeps = Sleeps()
    data = AlpacaMarketData(settings_for(fake_alpaca), sleep=sleeps)
    assert data.latest_prices(["ETH/USD"]) == {"ETH/USD": Decimal("3332.5")}
    assert sleeps == [2.0]
    fake_alpaca.fail(r".*/latest/trades", Fault.server_error(), times=None)
    assert data.latest_prices(["ETH/USD"]) == {}


def test_retry_policy_delays_and_retry_after_parsing() -> None:
    policy = RetryPolicy(backoff_seconds=1.0, max_delay_seconds=10.0)
    assert [policy.delay(a) for a in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(1, retry_after=30.0) == 10.0  # capped
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30.0
