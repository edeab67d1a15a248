"""News for the sentiment gate: a provider interface, Alpaca News, a per-id cache, and Fear & Greed.

Fetching is separated from scoring (`kronos_bot.gates.sentiment`) so the scoring stays a pure function
of articles and time, testable on hand-written headlines.

Why a cache: every 15-minute cycle looks back `lookback_hours` (24 h by default). Re-reading the whole
day each time would cost pages of requests and rate limit for nothing; `NewsFeed` keeps the articles
it has seen by id and asks the provider only for the time since its last successful fetch (with a
small overlap for articles indexed late; duplicates are dropped by id). When a fetch fails, the gate
still sees what was cached, and the failure is logged once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pydantic
from alpaca.data.requests import NewsRequest

from kronos_bot.logs import get_logger
from kronos_bot.market.alpaca_http import AlpacaNewsClient, MarketDataError, Sleep
from kronos_bot.retry import RetryPolicy

if TYPE_CHECKING:
    from kronos_bot.config import FearGreedSettings, SentimentSettings, Settings

# Each fetch reaches this far before the previous fetch's end, for articles Alpaca indexes late.
NEWS_OVERLAP = timedelta(minutes=15)
# Defaults of AlpacaNewsProvider (the config's gates.sentiment.max_attempts/backoff_seconds win).
NEWS_MAX_ATTEMPTS = 3
NEWS_BACKOFF_SECONDS = 1.0

log = get_logger("kronos_bot.news")


def news_symbol(symbol: str) -> str:
    """Alpaca News tags crypto as BASEQUOTE without the slash: "BTC/USD" -> "BTCUSD"."""
    return symbol.replace("/", "").upper()


@dataclass(frozen=True)
class NewsArticle:
    """One article; `symbols` uses our BASE/USD form for the coins we asked about, else the raw tag."""

    id: str
    headline: str
    summary: str
    created_at: datetime
    symbols: tuple[str, ...]
    source: str = ""
    url: str | None = None


class NewsProvider(Protocol):
    """Anything that can list articles about some symbols created in [start, end], newest first."""

    name: str

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime, limit: int) -> list[NewsArticle]:
        """At most `limit` articles; raises MarketDataError when the source cannot be read."""
        ...


class AlpacaNewsProvider:
    """Alpaca's news API through alpaca-py's `NewsClient` (needs API keys; the data host serves it)."""

    name = "alpaca_news"

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        url_override: str | None = None,
        timeout_seconds: float = 10.0,
        max_attempts: int = NEWS_MAX_ATTEMPTS,
        backoff_seconds: float = NEWS_BACKOFF_SECONDS,
        sleep: Sleep = time.sleep,
    ) -> None:
        policy = RetryPolicy(max_attempts=max_attempts, backoff_seconds=backoff_seconds, sleep=sleep)
        self._client = AlpacaNewsClient(
            policy, timeout_seconds=timeout_seconds, api_key=api_key, secret_key=secret_key, url_override=url_override
        )

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime, limit: int) -> list[NewsArticle]:
        by_tag = {news_symbol(s): s for s in symbols}
        request = NewsRequest(symbols=",".join(by_tag), start=start, end=end, limit=limit, sort="desc")
        try:
            news_set = self._client.get_news(request)
            raw_articles = news_set.data.get("news", [])  # type: ignore[union-attr]
        except (pydantic.ValidationError, ValueError, KeyError, TypeError) as exc:
            raise MarketDataError(f"malformed news response: {str(exc).splitlines()[0][:200]}") from exc
        articles = []
        for item in raw_articles:
            tags = tuple(by_tag.get(news_symbol(tag), tag) for tag in item.symbols)
            created = item.created_at if item.created_at.tzinfo else item.created_at.replace(tzinfo=UTC)
            articles.append(
                NewsArticle(
                    id=str(item.id),
                    headline=item.headline,
                    summary=item.summary or "",
                    created_at=created.astimezone(UTC),
                    symbols=tags,
                    source=item.source,
                    url=item.url,
                )
            )
        return articles


class NewsFeed:
    """Articles per symbol over the lookback window, cached by id; fetches only what is new.

    `unavailable_reason` is set when there is no provider (provider: none, or no API keys); the feed then
    returns nothing and the sentiment gate reports NO_DATA with that reason.
    """

    def __init__(
        self, provider: NewsProvider | None, settings: SentimentSettings, unavailable_reason: str | None = None
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.unavailable_reason = unavailable_reason if provider is None else None
        if provider is None and self.unavailable_reason is None:
            self.unavailable_reason = "no news provider"
        self._articles: dict[str, NewsArticle] = {}
        self._covered_until: dict[str, datetime] = {}
        self.last_error: str | None = None

    def recent(self, symbols: Sequence[str], now: datetime | None = None) -> dict[str, list[NewsArticle]]:
        """Per symbol, the cached articles of the lookback window (newest first, at most max_articles)."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        if self.provider is None or not symbols:
            return {s: [] for s in symbols}
        window_start = now - timedelta(hours=self.settings.lookback_hours)
        start = min(
            max(window_start, self._covered_until[s] - NEWS_OVERLAP) if s in self._covered_until else window_start
            for s in symbols
        )
        limit = self.settings.max_articles * len(symbols)
        try:
            fetched = self.provider.fetch(symbols, start, now, limit)
        except MarketDataError as exc:
            self.last_error = str(exc)
            log.warning(
                "news.fetch_failed",
                provider=self.provider.name,
                symbols=list(symbols),
                error=str(exc),
                cached=len(self._articles),
            )
        else:
            self.last_error = None
            new = [a for a in fetched if a.id not in self._articles]
            for article in fetched:
                self._articles[article.id] = article
            for symbol in symbols:
                self._covered_until[symbol] = now
            log.debug(
                "news.fetched", provider=self.provider.name, start=start.isoformat(), fetched=len(fetched), new=len(new)
            )
        # Forget what fell out of the window.
        self._articles = {k: a for k, a in self._articles.items() if a.created_at >= window_start}
        ordered = sorted(self._articles.values(), key=lambda a: a.created_at, reverse=True)
        return {
            s: [a for a in ordered if s in a.symbols or news_symbol(s) in a.symbols][: self.settings.max_articles]
            for s in symbols
        }


def build_news_feed(settings: Settings, *, sleep: Sleep = time.sleep) -> NewsFeed:
    """The feed the config asks for: Alpaca News with keys, else a feed that explains why there is none."""
    sentiment = settings.gates.sentiment
    if sentiment.provider == "none":
        return NewsFeed(None, sentiment, "sentiment provider is 'none'")
    if not settings.has_alpaca_keys:
        return NewsFeed(None, sentiment, "no Alpaca API keys (Alpaca News needs them)")
    assert settings.alpaca_api_key is not None and settings.alpaca_secret_key is not None
    provider = AlpacaNewsProvider(
        settings.alpaca_api_key.get_secret_value(),
        settings.alpaca_secret_key.get_secret_value(),
        # The news API lives on the market-data host, so the data override serves both.
        url_override=settings.bars.data_url_override,
        timeout_seconds=sentiment.request_timeout_seconds,
        max_attempts=sentiment.max_attempts,
        backoff_seconds=sentiment.backoff_seconds,
        sleep=sleep,
    )
    return NewsFeed(provider, sentiment)


# ----- Crypto Fear & Greed index -----


@dataclass(frozen=True)
class FearGreedReading:
    value: int  # 0 (extreme fear) .. 100 (extreme greed)
    classification: str
    timestamp: datetime


class FearGreedProvider:
    """The public Crypto Fear & Greed index (alternative.me JSON, no key), cached for an hour.

    Failures return None (logged as `news.fear_greed_failed`): the index only nudges the score, it must
    never block a cycle.
    """

    def __init__(self, settings: FearGreedSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._client = httpx.Client(
            timeout=settings.timeout_seconds, transport=transport, headers={"User-Agent": "kronos-bot"}
        )
        self._cached: FearGreedReading | None = None
        self._fetched_at: datetime | None = None

    def close(self) -> None:
        self._client.close()

    def latest(self, now: datetime | None = None) -> FearGreedReading | None:
        now = (now or datetime.now(UTC)).astimezone(UTC)
        if (
            self._cached is not None
            and self._fetched_at is not None
            and now - self._fetched_at < timedelta(minutes=self.settings.max_age_minutes)
        ):
            return self._cached
        try:
            response = self._client.get(self.settings.url)
            response.raise_for_status()
            reading = parse_fear_greed(response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("news.fear_greed_failed", url=self.settings.url, error=f"{type(exc).__name__}: {exc}"[:300])
            return None
        self._cached, self._fetched_at = reading, now
        return reading


def parse_fear_greed(payload: Any) -> FearGreedReading:
    """`{"data": [{"value": "40", "value_classification": "Fear", "timestamp": "1551157200"}]}` -> reading."""
    item = payload["data"][0]
    value = int(item["value"])
    if not 0 <= value <= 100:
        raise ValueError(f"fear & greed value out of range: {value}")
    return FearGreedReading(
        value=value,
        classification=str(item.get("value_classification", "")),
        timestamp=datetime.fromtimestamp(int(item["timestamp"]), tz=UTC),
    )
