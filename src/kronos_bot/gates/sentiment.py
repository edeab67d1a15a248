"""The sentiment gate: recent news per coin scored with VADER plus a crypto/finance lexicon.

Scoring (pure, `sentiment_gate`): each article's headline + ". " + summary gets VADER's compound score
(-1..1). The coin's score is the recency-weighted mean, weight = 0.5 ** (age_hours / half_life_hours),
optionally blended with the Fear & Greed index ((value - 50) / 50, weight `fear_greed.weight`). Score
>= bullish_threshold -> BULLISH, <= bearish_threshold -> BEARISH, else NEUTRAL. Veto: any single article
younger than veto_window_hours scoring below veto_threshold makes the gate BEARISH (veto=True) whatever
the mean says — one exchange hack outweighs ten price-prediction puff pieces. NO_DATA when there is no
provider, no keys, or no article in the lookback window; the Fear & Greed index alone does not make a
verdict (it is market-wide, not about the coin), but its value is still reported.

Why a lexicon: stock VADER was built on social-media text; it does not know "delisted", "rug pull" or
"all-time high", and rates "fine" (as in a regulator's fine) as positive. Single words are added to the
lexicon; multi-word phrases cannot be (VADER scores one token at a time), so each phrase is first
rewritten into one synthetic token that carries the phrase's valence ("rug pull" -> "kbxrugpull").
Valences use VADER's scale (-4..+4, mean human rating); they are our judgement, listed below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from kronos_bot.config import SentimentSettings
from kronos_bot.domain import SentimentResult, SentimentVerdict
from kronos_bot.market.news import FearGreedProvider, NewsArticle, NewsFeed

# Single words (lower case) -> valence. Overrides VADER's own value where both exist.
CRYPTO_WORDS: dict[str, float] = {
    # security incidents
    "hack": -2.5,
    "hacks": -2.5,
    "hacked": -3.0,
    "hacker": -2.0,
    "hackers": -2.2,
    "exploit": -2.5,
    "exploits": -2.5,
    "exploited": -2.8,
    "exploiter": -2.5,
    "drained": -2.5,
    "breach": -2.2,
    "stolen": -2.8,
    "theft": -2.8,
    "vulnerability": -1.5,
    "depeg": -2.5,
    "depegged": -2.8,
    # exchanges and listings
    "delist": -2.5,
    "delists": -2.5,
    "delisting": -2.8,
    "delisted": -2.8,
    "listing": 1.2,
    "listed": 1.0,
    "lists": 0.8,
    "outage": -2.0,
    "outages": -2.0,
    "downtime": -1.5,
    "halted": -2.0,
    "halts": -1.8,
    # legal and regulatory
    "lawsuit": -2.0,
    "lawsuits": -2.0,
    "sued": -2.2,
    "sues": -2.0,
    "subpoena": -1.8,
    "indicted": -2.8,
    "indictment": -2.8,
    "ponzi": -3.0,
    "crackdown": -2.2,
    "probe": -1.5,
    "investigation": -1.2,
    "fined": -2.0,
    "fine": -1.2,
    "penalty": -1.5,
    "approves": 1.8,
    "approve": 1.5,
    # solvency
    "bankruptcy": -3.0,
    "insolvency": -3.0,
    "insolvent": -3.0,
    "liquidation": -2.0,
    "liquidations": -2.0,
    "liquidated": -2.2,
    # market moves
    "bullish": 2.0,
    "bearish": -2.0,
    "surge": 2.0,
    "surges": 2.0,
    "surged": 2.0,
    "soar": 2.2,
    "soars": 2.2,
    "soared": 2.2,
    "rally": 2.0,
    "rallies": 2.0,
    "rallied": 2.0,
    "rebound": 1.5,
    "rebounds": 1.5,
    "rebounded": 1.5,
    "plunge": -2.5,
    "plunges": -2.5,
    "plunged": -2.5,
    "tumble": -2.0,
    "tumbles": -2.0,
    "tumbled": -2.0,
    "slump": -2.0,
    "slumps": -2.0,
    "slumped": -2.0,
    "crash": -2.5,
    "crashes": -2.5,
    "crashed": -2.5,
    "selloff": -2.0,
    "sell-off": -2.0,
    "inflows": 1.5,
    "outflows": -1.5,
    "ath": 2.5,
    # adoption
    "partnership": 1.8,
    "partnerships": 1.8,
    "adoption": 1.8,
    "integration": 0.8,
    "launch": 1.0,
    "launches": 1.0,
    "launched": 1.0,
    "upgrade": 1.2,
    "upgrades": 1.2,
    "milestone": 1.5,
}

# Phrases -> valence. Matched case-insensitively on word boundaries; spaces also match hyphens.
CRYPTO_PHRASES: dict[str, float] = {
    "all time high": 2.8,
    "record high": 2.5,
    "all time low": -2.5,
    "record low": -2.2,
    "etf approval": 3.0,
    "etf approved": 3.0,
    "approves etf": 3.0,
    "approved etf": 3.0,
    "etf rejection": -2.5,
    "etf rejected": -2.5,
    "rejects etf": -2.5,
    "etf denied": -2.5,
    "sec charges": -3.0,
    "sec sues": -3.0,
    "sec lawsuit": -3.0,
    "charged by the sec": -3.0,
    "rug pull": -3.2,
    "rug pulled": -3.2,
    "rugpull": -3.2,
    "exit scam": -3.5,
    "pump and dump": -2.5,
    "chapter 11": -3.0,
    "files for bankruptcy": -3.5,
    "security breach": -2.8,
    "flash crash": -2.8,
    "51% attack": -3.0,
    "halts withdrawals": -3.2,
    "withdrawals halted": -3.2,
    "pauses withdrawals": -3.0,
    "suspends withdrawals": -3.2,
    "withdrawals suspended": -3.2,
    "death cross": -1.5,
    "golden cross": 1.5,
    "bear market": -1.5,
    "bull market": 1.5,
    "strategic reserve": 2.0,
    "institutional adoption": 2.5,
    "mainnet launch": 1.8,
}


def _phrase_token(phrase: str) -> str:
    return "kbx" + re.sub(r"[^a-z0-9]", "", phrase.lower())


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.lower().split()]
    body = r"[\s\-]+".join(words)
    return re.compile(rf"(?<![\w-]){body}(?![\w-])", re.IGNORECASE)


# Longest first so "files for bankruptcy" wins over "bankruptcy" inside it.
_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (_phrase_pattern(p), _phrase_token(p)) for p in sorted(CRYPTO_PHRASES, key=len, reverse=True)
]


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(CRYPTO_WORDS)
    analyzer.lexicon.update({_phrase_token(p): v for p, v in CRYPTO_PHRASES.items()})
    return analyzer


def prepare_text(text: str) -> str:
    """Rewrite each known phrase into its synthetic token (see module doc)."""
    for pattern, token in _PHRASES:
        text = pattern.sub(f" {token} ", text)
    return text


def score_text(text: str) -> float:
    """VADER compound score (-1..1) of `text` with the crypto lexicon; 0.0 for empty text."""
    if not text.strip():
        return 0.0
    return float(_analyzer().polarity_scores(prepare_text(text))["compound"])


def article_text(article: NewsArticle) -> str:
    headline = article.headline.strip()
    summary = article.summary.strip()
    if not summary:
        return headline
    return f"{headline}{'' if headline.endswith(('.', '!', '?')) else '.'} {summary}"


def score_article(article: NewsArticle) -> float:
    """One number per article: headline and summary scored together as one short text."""
    return score_text(article_text(article))


def recency_weight(age: timedelta, half_life_hours: float) -> float:
    hours = max(age.total_seconds() / 3600.0, 0.0)
    return 0.5 ** (hours / half_life_hours)


def sentiment_gate(
    articles: Sequence[NewsArticle],
    now: datetime,
    settings: SentimentSettings,
    *,
    fear_greed: int | None = None,
    unavailable_reason: str | None = None,
) -> SentimentResult:
    """Pure: the verdict for one coin from its articles at `now` (see module doc for the rules).

    `articles` may include older ones; only those within lookback_hours count (an article dated slightly
    in the future, clock skew, counts as brand new). `fear_greed` (0-100) is blended only when
    `settings.fear_greed.enabled`.
    """
    blend = fear_greed if settings.fear_greed.enabled else None
    if unavailable_reason is not None:
        return SentimentResult(SentimentVerdict.NO_DATA, fear_greed=fear_greed, reason=unavailable_reason)
    lookback = timedelta(hours=settings.lookback_hours)
    window = [a for a in articles if now - a.created_at <= lookback]
    if not window:
        return SentimentResult(
            SentimentVerdict.NO_DATA,
            fear_greed=fear_greed,
            reason=f"no articles in the last {settings.lookback_hours} h",
        )

    scored = [(a, score_article(a)) for a in window]
    weights = [recency_weight(now - a.created_at, settings.half_life_hours) for a, _ in scored]
    news_score = sum(w * s for w, (_, s) in zip(weights, scored, strict=True)) / sum(weights)
    score = news_score
    if blend is not None:
        weight = settings.fear_greed.weight
        score = (1.0 - weight) * news_score + weight * (blend - 50) / 50.0

    veto_window = timedelta(hours=settings.veto_window_hours)
    recent = [(a, s) for a, s in scored if now - a.created_at <= veto_window]
    worst = min(recent, key=lambda pair: pair[1]) if recent else None
    common: dict[str, Any] = {
        "score": round(score, 4),
        "news_score": round(news_score, 4),
        "articles": len(window),
        "fear_greed": fear_greed,
    }
    if worst is not None and worst[1] < settings.veto_threshold:
        article, article_score = worst
        return SentimentResult(
            SentimentVerdict.BEARISH,
            veto=True,
            veto_article=article.headline[:200],
            reason=f"veto: article {article_score:+.2f} < {settings.veto_threshold:+.2f} within "
            f"{settings.veto_window_hours} h: {article.headline[:120]!r}",
            **common,
        )
    if score >= settings.bullish_threshold:
        verdict = SentimentVerdict.BULLISH
    elif score <= settings.bearish_threshold:
        verdict = SentimentVerdict.BEARISH
    else:
        verdict = SentimentVerdict.NEUTRAL
    blended = f", blended with fear & greed {blend}" if blend is not None else ""
    return SentimentResult(
        verdict,
        reason=f"weighted score {score:+.3f} over {len(window)} article(s){blended}; "
        f"thresholds {settings.bearish_threshold:+.2f}/{settings.bullish_threshold:+.2f}",
        **common,
    )


def sentiment_gates(
    symbols: Sequence[str],
    now: datetime,
    settings: SentimentSettings,
    feed: NewsFeed,
    fear_greed_provider: FearGreedProvider | None = None,
) -> dict[str, SentimentResult]:
    """One cycle's sentiment for every symbol: fetch through `feed` (a NewsFeed), then the pure gate.

    The Fear & Greed index is read only when enabled and a provider is given; its failure just leaves it
    out of the blend.
    """
    fear_greed: int | None = None
    if settings.fear_greed.enabled and fear_greed_provider is not None:
        reading = fear_greed_provider.latest(now)
        fear_greed = reading.value if reading is not None else None
    if feed.unavailable_reason is not None:
        return {
            s: sentiment_gate([], now, settings, fear_greed=fear_greed, unavailable_reason=feed.unavailable_reason)
            for s in symbols
        }
    per_symbol: Mapping[str, list[NewsArticle]] = feed.recent(symbols, now)
    results = {}
    for symbol in symbols:
        articles = per_symbol.get(symbol, [])
        reason = None
        if not articles and feed.last_error is not None:
            reason = f"news unavailable: {feed.last_error}"
        results[symbol] = sentiment_gate(articles, now, settings, fear_greed=fear_greed, unavailable_reason=reason)
    return results
