"""Sentiment gate: lexicon, phrases, recency weighting, thresholds, veto, NO_DATA, Fear & Greed blend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from kronos_bot.config import SentimentSettings
from kronos_bot.domain import SentimentVerdict
from kronos_bot.gates.sentiment import (
    article_text,
    prepare_text,
    recency_weight,
    score_article,
    score_text,
    sentiment_gate,
    sentiment_gates,
)
from kronos_bot.market.news import NewsArticle, NewsFeed

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
SETTINGS = SentimentSettings()
_ids = iter(range(1, 10_000))


def article(
    headline: str, hours_ago: float = 1.0, summary: str = "", symbols: Sequence[str] = ("BTC/USD",)
) -> NewsArticle:
    return NewsArticle(
        id=str(next(_ids)),
        headline=headline,
        summary=summary,
        created_at=NOW - timedelta(hours=hours_ago),
        symbols=tuple(symbols),
    )


BULLISH = "Bitcoin ETF approval sends BTC to a record high"
BEARISH = "Major exchange hacked, $200M in bitcoin stolen"
MILD_BEARISH = "Bitcoin slips as traders weigh uncertainty"
DULL = "Bitcoin trading volume report for the week"


# ----- lexicon -----


@pytest.mark.parametrize(
    "text",
    [
        "Exchange hacked overnight",
        "Protocol exploit drains liquidity pool",
        "Coinbase delists the token",
        "SEC charges crypto lender executives",
        "Developers accused of rug pull",
        "Exchange files for bankruptcy",
        "Solana network outage lasts five hours",
        "Lender halts withdrawals",
        "Binance pays $4.3B fine",
        "Founder sued by investors",
        "Token delisted from Binance",
    ],
)
def test_crypto_bad_news_is_negative(text: str) -> None:
    assert score_text(text) < -0.2


@pytest.mark.parametrize(
    "text",
    [
        "SEC approves spot ETF",
        "Bitcoin hits all-time high",
        "Bitcoin hits all time high",
        "Visa announces partnership with Solana",
        "Institutional adoption accelerates",
        "ETH rallies after upgrade",
        "Bitcoin ETF approval expected this week",
        "DOGE surges 20%",
    ],
)
def test_crypto_good_news_is_positive(text: str) -> None:
    assert score_text(text) > 0.2


def test_lexicon_changes_what_plain_vader_misses() -> None:
    plain = SentimentIntensityAnalyzer()
    for text in ("Token delisted", "Developers pull the rug: rug pull confirmed", "Regulator imposes fine"):
        assert score_text(text) < plain.polarity_scores(text)["compound"]
    assert plain.polarity_scores("Token delisted")["compound"] == 0.0


def test_phrases_become_single_tokens_case_and_hyphen_insensitive() -> None:
    assert "kbxalltimehigh" in prepare_text("BTC at All-Time High")
    assert "kbxalltimehigh" in prepare_text("BTC at all time  high")
    assert "kbxrugpull" in prepare_text("a rug-pull")
    assert "kbxetfapproval" in prepare_text("ETF Approval")
    assert "kbxseccharges" in prepare_text("SEC charges")
    # no partial-word matches
    assert prepare_text("drug pulls") == "drug pulls"


def test_negation_still_works_around_lexicon_words() -> None:
    assert score_text("Exchange was not hacked, funds are safe") > score_text("Exchange was hacked")


def test_headline_and_summary_scored_together() -> None:
    a = article("Bitcoin steady", summary="Analysts warn of a possible exploit in the bridge")
    assert article_text(a) == "Bitcoin steady. Analysts warn of a possible exploit in the bridge"
    assert score_article(a) < 0
    assert article_text(article("Why is BTC up?", summary="Inflows.")) == "Why is BTC up? Inflows."
    assert score_text("") == 0.0


# ----- gate -----


def test_recency_weight_half_life() -> None:
    assert recency_weight(timedelta(0), 6.0) == 1.0
    assert recency_weight(timedelta(hours=6), 6.0) == pytest.approx(0.5)
    assert recency_weight(timedelta(hours=12), 6.0) == pytest.approx(0.25)
    assert recency_weight(timedelta(hours=-1), 6.0) == 1.0  # clock skew counts as new


def test_weighted_mean_matches_formula() -> None:
    arts = [article(BULLISH, 0.5), article(MILD_BEARISH, 6.5), article(DULL, 12.5)]
    result = sentiment_gate(arts, NOW, SETTINGS)
    weights = [0.5 ** (a_h / 6.0) for a_h in (0.5, 6.5, 12.5)]
    scores = [score_article(a) for a in arts]
    expected = sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights)
    assert result.news_score == pytest.approx(expected, abs=1e-4)
    assert result.score == result.news_score and result.articles == 3


def test_recency_decides_between_old_and_new_news() -> None:
    old_good_new_bad = [article(BULLISH, 20), article("Bitcoin slumps amid fears of crackdown", 0.2)]
    new_good_old_bad = [article(BULLISH, 0.2), article("Bitcoin slumps amid fears of crackdown", 20)]
    settings = SentimentSettings(veto_threshold=-1.0)
    assert sentiment_gate(old_good_new_bad, NOW, settings).verdict == SentimentVerdict.BEARISH
    assert sentiment_gate(new_good_old_bad, NOW, settings).verdict == SentimentVerdict.BULLISH


def test_thresholds() -> None:
    assert sentiment_gate([article(BULLISH)], NOW, SETTINGS).verdict == SentimentVerdict.BULLISH
    assert sentiment_gate([article(DULL)], NOW, SETTINGS).verdict == SentimentVerdict.NEUTRAL
    assert sentiment_gate([article(MILD_BEARISH)], NOW, SETTINGS).verdict in (
        SentimentVerdict.NEUTRAL,
        SentimentVerdict.BEARISH,
    )
    strict = SentimentSettings(bullish_threshold=0.95, bearish_threshold=-0.95)
    assert sentiment_gate([article(BULLISH)], NOW, strict).verdict == SentimentVerdict.NEUTRAL


def test_veto_by_one_recent_very_bad_article() -> None:
    arts = [article(BULLISH, 0.1), article(BULLISH, 0.2), article(BULLISH, 0.3), article(BEARISH, 2)]
    result = sentiment_gate(arts, NOW, SETTINGS)
    assert result.score is not None and result.score > SETTINGS.bullish_threshold  # the mean alone is bullish
    assert result.verdict == SentimentVerdict.BEARISH and result.veto is True
    assert result.veto_article == BEARISH and "veto" in result.reason


def test_veto_window_and_threshold() -> None:
    arts = [article(BULLISH, 0.1), article(BULLISH, 0.2), article(BULLISH, 0.3), article(BEARISH, 7)]
    outside = sentiment_gate(arts, NOW, SETTINGS)  # the hack is 7 h old, the window is 6 h
    assert outside.veto is False and outside.verdict == SentimentVerdict.BULLISH
    assert sentiment_gate(arts, NOW, SentimentSettings(veto_window_hours=8)).veto is True
    lenient = SentimentSettings(veto_threshold=-0.95)
    assert sentiment_gate([*arts[:3], article(BEARISH, 1)], NOW, lenient).veto is False


def test_no_data_cases() -> None:
    no_provider = sentiment_gate([], NOW, SETTINGS, unavailable_reason="sentiment provider is 'none'")
    assert no_provider.verdict == SentimentVerdict.NO_DATA and no_provider.reason == "sentiment provider is 'none'"
    empty = sentiment_gate([], NOW, SETTINGS)
    assert empty.verdict == SentimentVerdict.NO_DATA and empty.reason == "no articles in the last 24 h"
    too_old = sentiment_gate([article(BEARISH, 25)], NOW, SETTINGS)
    assert too_old.verdict == SentimentVerdict.NO_DATA and too_old.veto is False


def test_fear_greed_blend_only_when_enabled() -> None:
    arts = [article(DULL)]
    news = score_article(arts[0])
    off = sentiment_gate(arts, NOW, SETTINGS, fear_greed=90)
    assert off.score == pytest.approx(news, abs=1e-4) and off.fear_greed == 90
    on = SentimentSettings(fear_greed={"enabled": True, "weight": 0.5})
    blended = sentiment_gate(arts, NOW, on, fear_greed=90)
    assert blended.score == pytest.approx(0.5 * news + 0.5 * 0.8, abs=1e-4)
    assert blended.verdict == SentimentVerdict.BULLISH and "fear & greed 90" in blended.reason
    # the index alone never makes a verdict
    assert sentiment_gate([], NOW, on, fear_greed=90).verdict == SentimentVerdict.NO_DATA


# ----- cycle helper over a NewsFeed -----


class ListProvider:
    name = "list"

    def __init__(self, articles: list[NewsArticle]) -> None:
        self.articles = articles
        self.calls: list[tuple[list[str], datetime, datetime]] = []
        self.error: Exception | None = None

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime, limit: int) -> list[NewsArticle]:
        self.calls.append((list(symbols), start, end))
        if self.error is not None:
            raise self.error
        return [a for a in self.articles if start <= a.created_at <= end and set(a.symbols) & set(symbols)][:limit]


def test_sentiment_gates_per_symbol() -> None:
    provider = ListProvider([article(BULLISH, 1, symbols=["BTC/USD"]), article(BEARISH, 1, symbols=["ETH/USD"])])
    results = sentiment_gates(["BTC/USD", "ETH/USD", "SOL/USD"], NOW, SETTINGS, NewsFeed(provider, SETTINGS))
    assert results["BTC/USD"].verdict == SentimentVerdict.BULLISH
    assert results["ETH/USD"].verdict == SentimentVerdict.BEARISH and results["ETH/USD"].veto
    assert results["SOL/USD"].verdict == SentimentVerdict.NO_DATA
    assert len(provider.calls) == 1  # one fetch for all symbols


def test_sentiment_gates_without_provider_or_after_fetch_failure() -> None:
    feed = NewsFeed(None, SETTINGS, "no Alpaca API keys (Alpaca News needs them)")
    results = sentiment_gates(["BTC/USD"], NOW, SETTINGS, feed)
    assert results["BTC/USD"].verdict == SentimentVerdict.NO_DATA and "no Alpaca API keys" in results["BTC/USD"].reason

    from kronos_bot.market import MarketDataError

    provider = ListProvider([])
    provider.error = MarketDataError("HTTP 503 after 3 attempt(s)")
    results = sentiment_gates(["BTC/USD"], NOW, SETTINGS, NewsFeed(provider, SETTINGS))
    assert results["BTC/USD"].verdict == SentimentVerdict.NO_DATA
    assert results["BTC/USD"].reason == "news unavailable: HTTP 503 after 3 attempt(s)"
