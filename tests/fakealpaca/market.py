"""Alpaca market-data endpoints on the fake server, in the JSON shapes alpaca-py's models parse.

Routes (paths as alpaca-py builds them: `url_override + "/" + api_version + path`):
    GET /v1beta3/crypto/us/bars            {"bars": {SYM: [{t,o,h,l,c,v,n,vw}, ...]}, "next_page_token": ...}
    GET /v1beta3/crypto/us/latest/trades   {"trades": {SYM: {t,p,s,tks,i}}}
    GET /v1beta3/crypto/us/latest/quotes   {"quotes": {SYM: {t,bp,bs,ap,as}}}
    GET /v1beta1/news                      {"news": [{id,headline,author,created_at,...}], "next_page_token": ...}

Behaviour worth knowing in tests:
- bars: `symbols` (comma list), `timeframe` (only "1Hour" is stored; others -> 422), `start`/`end`
  inclusive on the bar OPEN time, `limit` = page size (capped by `max_page_size` when set, to force
  pagination), `page_token` = an opaque offset. As Alpaca documents, results are sorted by symbol then
  time, so one page can hold the end of one symbol and the start of the next. Symbols without bars are
  absent from the response (like the real API).
- news: needs the APCA key headers (401 otherwise, like Alpaca), filters by `symbols` (matching ignores
  "/", so "BTCUSD" and "BTC/USD" are the same coin), `start`/`end` on `created_at`, `sort` (default desc),
  `limit` (default 10, max 50) and `page_token`.

Scenario state (`MarketState`) is plain data that tests set directly or with the helpers:
    market.set_bars("BTC/USD", df)                 # DataFrame indexed by UTC open time, OHLCV columns
    market.add_hourly_bars("ETH/USD", end=..., count=80, start_price=2000.0)
    market.set_latest_trade("BTC/USD", 65000.5)
    market.add_news(headline="...", symbols=["BTCUSD"], created_at=...)
"""

from __future__ import annotations

import base64
import itertools
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from tests.fakealpaca.server import FakeServer, Request, Response

DATA_PREFIX = "/v1beta3/crypto/us"
NEWS_PATH = "/v1beta1/news"
BARS_PATH = f"{DATA_PREFIX}/bars"
LATEST_TRADES_PATH = f"{DATA_PREFIX}/latest/trades"
LATEST_QUOTES_PATH = f"{DATA_PREFIX}/latest/quotes"
HOUR = timedelta(hours=1)
MAX_BARS_PAGE = 10_000
MAX_NEWS_PAGE = 50


def iso(ts: datetime) -> str:
    """Alpaca's timestamp form: RFC 3339 in UTC with a Z."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _norm(symbol: str) -> str:
    return symbol.replace("/", "").upper()


def _token(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    return int(base64.b64decode(token).decode().split(":", 1)[1])


@dataclass
class FakeBar:
    t: datetime
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's key
    c: float
    v: float
    n: int = 1
    vw: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "t": iso(self.t),
            "o": self.o,
            "h": self.h,
            "l": self.l,
            "c": self.c,
            "v": self.v,
            "n": self.n,
            "vw": self.vw if self.vw is not None else (self.h + self.l + self.c) / 3,
        }


@dataclass
class MarketState:
    """Everything the data endpoints serve; mutate it from tests (before or between requests)."""

    bars: dict[str, list[FakeBar]] = field(default_factory=dict)
    latest_trades: dict[str, dict[str, Any]] = field(default_factory=dict)
    latest_quotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    news: list[dict[str, Any]] = field(default_factory=list)
    # Cap on bars per page (None = Alpaca's 10,000); set small to exercise pagination.
    max_page_size: int | None = None
    # Alpaca's news API refuses unauthenticated calls; turn off to test other failures.
    news_requires_keys: bool = True
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ----- bars -----

    def set_bars(self, symbol: str, df: pd.DataFrame) -> None:
        """Replace a symbol's bars with a DataFrame indexed by UTC open time (open/high/low/close/volume)."""
        rows = [
            FakeBar(
                t=ts.to_pydatetime(),
                o=float(r.open),
                h=float(r.high),
                l=float(r.low),
                c=float(r.close),
                v=float(r.volume),
            )
            for ts, r in zip(df.index, df.itertuples(index=False), strict=True)
        ]
        self.bars[symbol] = rows

    def add_hourly_bars(
        self,
        symbol: str,
        *,
        end: datetime,
        count: int,
        start_price: float = 100.0,
        drift: float = 0.001,
        amplitude: float = 0.004,
    ) -> None:
        """`count` consistent synthetic hourly bars, the last one opening at `end` (a deterministic wave)."""
        first = end - (count - 1) * HOUR
        price = start_price
        rows = []
        for i in range(count):
            open_ = price
            close = open_ * (1 + drift + amplitude * math.sin(i / 3.0))
            rows.append(
                FakeBar(
                    t=first + i * HOUR,
                    o=open_,
                    h=max(open_, close) * 1.002,
                    l=min(open_, close) * 0.998,
                    c=close,
                    v=10.0 + i % 7,
                    n=5 + i % 3,
                )
            )
            price = close
        self.bars[symbol] = rows

    def remove_bars(self, symbol: str, *timestamps: datetime) -> None:
        drop = set(timestamps)
        self.bars[symbol] = [b for b in self.bars.get(symbol, []) if b.t not in drop]

    # ----- latest trade / quote -----

    def set_latest_trade(self, symbol: str, price: float, ts: datetime | None = None, size: float = 0.01) -> None:
        with self._lock:
            trade_id = next(self._ids)
        self.latest_trades[symbol] = {
            "t": iso(ts or datetime.now(UTC)),
            "p": price,
            "s": size,
            "tks": "B",
            "i": trade_id,
        }

    def set_latest_quote(self, symbol: str, bid: float, ask: float, ts: datetime | None = None) -> None:
        self.latest_quotes[symbol] = {"t": iso(ts or datetime.now(UTC)), "bp": bid, "bs": 1.0, "ap": ask, "as": 1.0}

    # ----- news -----

    def add_news(
        self,
        *,
        headline: str,
        symbols: list[str],
        created_at: datetime,
        summary: str = "",
        article_id: int | None = None,
        source: str = "benzinga",
    ) -> dict[str, Any]:
        with self._lock:
            new_id = article_id if article_id is not None else next(self._ids)
        article = {
            "id": new_id,
            "headline": headline,
            "author": "Fake Author",
            "created_at": iso(created_at),
            "updated_at": iso(created_at),
            "summary": summary,
            "content": "",
            "url": f"https://news.example/{new_id}",
            "images": [],
            "symbols": symbols,
            "source": source,
        }
        self.news.append(article)
        return article


def _symbols(request: Request) -> list[str]:
    raw = request.arg("symbols") or ""
    return [s for s in raw.split(",") if s]


def _bars(state: MarketState, request: Request) -> Response:
    symbols = _symbols(request)
    if not symbols:
        return Response.error(400, "symbols is required", code=40010001)
    timeframe = request.arg("timeframe")
    if timeframe not in ("1Hour", "1H"):
        return Response.error(422, f"the fake serves 1Hour bars only, got {timeframe!r}", code=42210000)
    start = parse_time(request.arg("start")) if request.arg("start") else None
    end = parse_time(request.arg("end")) if request.arg("end") else None
    items: list[tuple[str, FakeBar]] = []
    for symbol in sorted(set(symbols)):
        for bar in sorted(state.bars.get(symbol, []), key=lambda b: b.t):
            if (start is None or bar.t >= start) and (end is None or bar.t <= end):
                items.append((symbol, bar))
    page_size = min(int(request.arg("limit") or 1000), MAX_BARS_PAGE)
    if state.max_page_size is not None:
        page_size = min(page_size, state.max_page_size)
    offset = _offset(request.arg("page_token"))
    page = items[offset : offset + page_size]
    out: dict[str, list[dict[str, Any]]] = {}
    for symbol, bar in page:
        out.setdefault(symbol, []).append(bar.to_json())
    more = offset + page_size < len(items)
    return Response(json={"bars": out, "next_page_token": _token(offset + page_size) if more else None})


def _latest(key: str, source: dict[str, dict[str, Any]], request: Request) -> Response:
    symbols = _symbols(request)
    if not symbols:
        return Response.error(400, "symbols is required", code=40010001)
    return Response(json={key: {s: source[s] for s in symbols if s in source}})


def _news(state: MarketState, request: Request) -> Response:
    if state.news_requires_keys and not (
        request.headers.get("apca-api-key-id") and request.headers.get("apca-api-secret-key")
    ):
        return Response(status=401, json={"message": "unauthorized"})
    wanted = {_norm(s) for s in _symbols(request)}
    start = parse_time(request.arg("start")) if request.arg("start") else None
    end = parse_time(request.arg("end")) if request.arg("end") else None
    articles = []
    for article in state.news:
        created = parse_time(article["created_at"])
        if wanted and not wanted & {_norm(s) for s in article["symbols"]}:
            continue
        if (start is not None and created < start) or (end is not None and created > end):
            continue
        articles.append(article)
    descending = (request.arg("sort") or "desc").lower() == "desc"
    articles.sort(key=lambda a: (a["updated_at"], a["id"]), reverse=descending)
    limit = min(int(request.arg("limit") or 10), MAX_NEWS_PAGE)
    offset = _offset(request.arg("page_token"))
    page = articles[offset : offset + limit]
    more = offset + limit < len(articles)
    return Response(json={"news": page, "next_page_token": _token(offset + limit) if more else None})


def install(server: FakeServer, state: MarketState) -> None:
    """Register the data routes on `server`, serving from `state`."""
    server.add_route("GET", BARS_PATH, lambda r: _bars(state, r))
    server.add_route("GET", LATEST_TRADES_PATH, lambda r: _latest("trades", state.latest_trades, r))
    server.add_route("GET", LATEST_QUOTES_PATH, lambda r: _latest("quotes", state.latest_quotes, r))
    server.add_route("GET", NEWS_PATH, lambda r: _news(state, r))
