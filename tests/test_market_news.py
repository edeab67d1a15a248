"""News through alpaca-py's NewsClient against the fake server, the per-id cache, and Fear & Greed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from kronos_bot.config import FearGreedSettings, SentimentSettings, Settings
from kronos_bot.domain import SentimentVerdict
from kronos_bot.gates.sentiment import sentiment_gates
from kronos_bot.market import AlpacaNewsProvider, FearGreedProvider, MarketDataError, NewsFeed, build_news_feed
from kronos_bot.market.news import parse_fear_greed
from tests.fakealpaca import FakeAlpaca, Fault


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Another test may have configured logging at WARNING; capture_logs keeps the level filter."""
    structlog.reset_defaults()


NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
NEWS_PATH = r"/v1beta1/news"


def provider(fake: FakeAlpaca, **kw: object) -> AlpacaNewsProvider:
    return AlpacaNewsProvider("key-id-1234", "secret-5678", url_override=fake.base_url, sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def add(fake: FakeAlpaca, headline: str, hours_ago: float, symbols: list[str], **kw: object) -> dict:
    return fake.market.add_news(headline=headline, symbols=symbols, created_at=NOW - timedelta(hours=hours_ago), **kw)  # type: ignore[arg-type]


def test_alpaca_news_provider_parses_articles_and_maps_symbols(fake_alpaca: FakeAlpaca) -> None:
    add(fake_alpaca, "Bitcoin ETF approval nears", 1, ["BTCUSD", "COIN"], summary="Analysts upbeat.")
    add(fake_alpaca, "Solana outage", 2, ["SOLUSD"])
    add(fake_alpaca, "Apple earnings", 1, ["AAPL"])
    articles = provider(fake_alpaca).fetch(["BTC/USD", "SOL/USD"], NOW - timedelta(hours=24), NOW, 100)
    assert [a.headline for a in articles] == ["Bitcoin ETF approval nears", "Solana outage"]  # newest first
    btc = articles[0]
    assert btc.symbols == ("BTC/USD", "COIN") and btc.summary == "Analysts upbeat."
    assert btc.created_at == NOW - timedelta(hours=1) and btc.created_at.tzinfo is not None
    request = fake_alpaca.requests_to(NEWS_PATH)[0]
    assert request.arg("symbols") == "BTCUSD,SOLUSD" and request.arg("sort") == "desc"
    assert request.headers["apca-api-key-id"] == "key-id-1234"


def test_news_pagination_up_to_the_limit(fake_alpaca: FakeAlpaca) -> None:
    for i in range(120):
        add(fake_alpaca, f"Bitcoin note {i}", i / 10, ["BTCUSD"])
    articles = provider(fake_alpaca).fetch(["BTC/USD"], NOW - timedelta(hours=24), NOW, 100)
    assert len(articles) == 100
    assert len(fake_alpaca.requests_to(NEWS_PATH)) == 2  # 50 per page


def test_news_failures_raise_market_data_error(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.fail(NEWS_PATH, Fault.server_error(500), times=None)
    with pytest.raises(MarketDataError, match="HTTP 500 after 3 attempt"):
        provider(fake_alpaca).fetch(["BTC/USD"], NOW - timedelta(hours=24), NOW, 10)
    fake_alpaca.server.clear_faults()
    fake_alpaca.market.news_requires_keys = True
    bad_keys = AlpacaNewsProvider("x-key", "y-secret", url_override=fake_alpaca.base_url, sleep=lambda s: None)
    fake_alpaca.fail(NEWS_PATH, Fault.http_status(403, "forbidden"), times=1)
    with pytest.raises(MarketDataError, match="HTTP 403"):
        bad_keys.fetch(["BTC/USD"], NOW - timedelta(hours=24), NOW, 10)


def test_feed_fetches_only_new_articles_and_keeps_the_cache(fake_alpaca: FakeAlpaca) -> None:
    add(fake_alpaca, "Bitcoin rallies", 3, ["BTCUSD"])
    add(fake_alpaca, "Ethereum upgrade goes live", 2, ["ETHUSD"])
    feed = NewsFeed(provider(fake_alpaca), SentimentSettings())
    first = feed.recent(["BTC/USD", "ETH/USD"], NOW)
    assert [a.headline for a in first["BTC/USD"]] == ["Bitcoin rallies"]
    assert [a.headline for a in first["ETH/USD"]] == ["Ethereum upgrade goes live"]

    add(fake_alpaca, "Bitcoin exchange hacked", -0.2, ["BTCUSD"])  # published after the first fetch
    later = NOW + timedelta(minutes=15)
    second = feed.recent(["BTC/USD", "ETH/USD"], later)
    assert [a.headline for a in second["BTC/USD"]] == ["Bitcoin exchange hacked", "Bitcoin rallies"]
    assert [a.headline for a in second["ETH/USD"]] == ["Ethereum upgrade goes live"]

    requests = fake_alpaca.requests_to(NEWS_PATH)
    assert len(requests) == 2
    first_start = datetime.fromisoformat(requests[0].arg("start"))
    second_start = datetime.fromisoformat(requests[1].arg("start"))
    assert first_start == NOW - timedelta(hours=24)  # the whole lookback, once
    assert second_start == NOW - timedelta(minutes=15)  # since the last fetch, minus the overlap


def test_feed_drops_articles_that_leave_the_window(fake_alpaca: FakeAlpaca) -> None:
    add(fake_alpaca, "Old bitcoin story", 23.5, ["BTCUSD"])
    feed = NewsFeed(provider(fake_alpaca), SentimentSettings())
    assert len(feed.recent(["BTC/USD"], NOW)["BTC/USD"]) == 1
    assert feed.recent(["BTC/USD"], NOW + timedelta(hours=1))["BTC/USD"] == []


def test_feed_serves_cache_when_a_fetch_fails(fake_alpaca: FakeAlpaca) -> None:
    add(fake_alpaca, "Bitcoin ETF approval", 1, ["BTCUSD"])
    feed = NewsFeed(provider(fake_alpaca), SentimentSettings())
    feed.recent(["BTC/USD"], NOW)
    fake_alpaca.fail(NEWS_PATH, Fault.rate_limited(retry_after=0), times=None)
    with capture_logs() as logs:
        results = sentiment_gates(["BTC/USD"], NOW + timedelta(minutes=15), SentimentSettings(), feed)
    assert results["BTC/USD"].verdict == SentimentVerdict.BULLISH and results["BTC/USD"].articles == 1
    failed = [e for e in logs if e["event"] == "news.fetch_failed"]
    assert len(failed) == 1 and failed[0]["cached"] == 1
    assert feed.last_error is not None


def test_build_news_feed_reasons(fake_alpaca: FakeAlpaca) -> None:
    none = build_news_feed(Settings(gates={"sentiment": {"provider": "none"}}))
    assert none.provider is None and none.unavailable_reason == "sentiment provider is 'none'"
    no_keys = build_news_feed(Settings())
    assert no_keys.provider is None and "no Alpaca API keys" in (no_keys.unavailable_reason or "")
    keyed = build_news_feed(
        Settings(
            ALPACA_API_KEY="key-id-1234",
            ALPACA_SECRET_KEY="secret-5678",
            bars={"data_url_override": fake_alpaca.base_url},
        )
    )
    assert keyed.provider is not None and keyed.unavailable_reason is None
    add(fake_alpaca, "Bitcoin hits all-time high", 1, ["BTCUSD"])
    assert len(keyed.recent(["BTC/USD"], NOW)["BTC/USD"]) == 1


# ----- Fear & Greed -----

FNG = {
    "name": "Fear and Greed Index",
    "data": [{"value": "72", "value_classification": "Greed", "timestamp": "1735689600", "time_until_update": "3600"}],
    "metadata": {"error": None},
}


def test_fear_greed_parse_and_cache() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=FNG)

    fg = FearGreedProvider(FearGreedSettings(enabled=True), transport=httpx.MockTransport(handler))
    reading = fg.latest(NOW)
    assert reading is not None and reading.value == 72 and reading.classification == "Greed"
    assert reading.timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert fg.latest(NOW + timedelta(minutes=30)) == reading and len(calls) == 1
    fg.latest(NOW + timedelta(minutes=61))
    assert len(calls) == 2
    assert str(calls[0].url) == "https://api.alternative.me/fng/?limit=1"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500),
        httpx.Response(200, content=b"{not json"),
        httpx.Response(200, json={"data": []}),
        httpx.Response(200, json={"data": [{"value": "140", "timestamp": "1"}]}),
    ],
)
def test_fear_greed_failures_are_none(response: httpx.Response) -> None:
    fg = FearGreedProvider(FearGreedSettings(enabled=True), transport=httpx.MockTransport(lambda r: response))
    with capture_logs() as logs:
        assert fg.latest(NOW) is None
    assert [e["event"] for e in logs] == ["news.fear_greed_failed"]


def test_fear_greed_blended_into_the_cycle() -> None:
    fg = FearGreedProvider(
        FearGreedSettings(enabled=True), transport=httpx.MockTransport(lambda r: httpx.Response(200, json=FNG))
    )
    settings = SentimentSettings(fear_greed={"enabled": True, "weight": 0.5})
    feed = NewsFeed(None, settings, "no Alpaca API keys")
    results = sentiment_gates(["BTC/USD"], NOW, settings, feed, fg)
    assert results["BTC/USD"].verdict == SentimentVerdict.NO_DATA and results["BTC/USD"].fear_greed == 72


def test_parse_fear_greed_shape() -> None:
    assert parse_fear_greed(json.loads(json.dumps(FNG))).value == 72
