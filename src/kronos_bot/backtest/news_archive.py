"""A JSONL news archive as a `NewsProvider`, so backtests score news through the live `NewsFeed`.

One article per line: `{"id": ..., "created_at": ISO time, "headline": ..., "summary": ..., "symbols":
["BTCUSD" or "BTC/USD", ...]}`. Without an archive the sentiment gate is NO_DATA in backtests (Alpaca's
news API is not replayed), and the report says so.

No look-ahead: `fetch` never returns an article created after the `end` the feed asks for, which is the
replayed `now`.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from kronos_bot.market.news import NewsArticle, news_symbol


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def load_news_archive(path: str | Path) -> list[NewsArticle]:
    """Parse the archive; a malformed line is an error naming the file and line number."""
    articles: list[NewsArticle] = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                symbols = item.get("symbols") or []
                if isinstance(symbols, str):
                    symbols = [symbols]
                articles.append(
                    NewsArticle(
                        id=str(item.get("id", f"line-{number}")),
                        headline=str(item["headline"]),
                        summary=str(item.get("summary") or ""),
                        created_at=_utc(str(item["created_at"])),
                        symbols=tuple(str(s) for s in symbols),
                        source=str(item.get("source") or "archive"),
                        url=item.get("url"),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a news article ({type(exc).__name__}: {exc})") from exc
    return articles


class ArchiveNewsProvider:
    """Articles from an in-memory archive, answering the `NewsProvider` protocol."""

    name = "archive"

    def __init__(self, articles: Sequence[NewsArticle]) -> None:
        self.articles = sorted(articles, key=lambda a: a.created_at)
        self._times = [a.created_at for a in self.articles]

    def __len__(self) -> int:
        return len(self.articles)

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime, limit: int) -> list[NewsArticle]:
        """Articles about `symbols` created in [start, end], newest first, at most `limit`."""
        wanted = {news_symbol(s): s for s in symbols}
        wanted.update({s.split("/")[0].upper(): s for s in symbols})
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        out: list[NewsArticle] = []
        for article in reversed(self.articles[lo:hi]):
            tags = [wanted.get(news_symbol(tag)) or wanted.get(tag.upper()) for tag in article.symbols]
            ours = tuple(dict.fromkeys(t for t in tags if t))
            if ours:
                out.append(
                    NewsArticle(
                        article.id,
                        article.headline,
                        article.summary,
                        article.created_at,
                        ours,
                        article.source,
                        article.url,
                    )
                )
                if len(out) >= limit:
                    break
        return out
