"""Plain, torch-free value types that flow between market data, gates, the engine and the journal.

Keeping them in one small module lets every decision function be pure and testable on hand-made values:
a gate takes bars or a forecast and returns one of these; the engine takes these and returns a Decision.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

# What the bot trades: crypto against the US dollar, written `BASE/USD` in config, journal and logs.
QUOTE = "USD"
_BASE = re.compile(r"[A-Z0-9]{1,15}")
SYMBOL_FORMS = "BTC, btc/usd, BTC/USD, BTC-USD or BTCUSD"


def parse_symbol(text: str) -> str:
    """A symbol as a user types it -> `BASE/USD`: `btc`, `BTC/usd`, `BTC-USD`, `BTCUSD` all give `BTC/USD`.

    Why one parser: the journal, the config and the logs spell symbols `BASE/USD`, and a filter that
    compares a differently typed symbol with them finds nothing without saying so. Raises ValueError
    for anything else (another quote currency, stray characters).
    """
    raw = text.strip().upper().replace("-", "/")
    if "/" in raw:
        base, _, quote = raw.partition("/")
    elif raw.endswith(QUOTE) and len(raw) > len(QUOTE):
        base, quote = raw[: -len(QUOTE)], QUOTE
    else:
        base, quote = raw, QUOTE
    if quote != QUOTE:
        raise ValueError(f"{text!r}: only {QUOTE} pairs are traded (give {SYMBOL_FORMS})")
    if not _BASE.fullmatch(base) or base == QUOTE:
        raise ValueError(f"{text!r} is not a symbol (give {SYMBOL_FORMS})")
    return f"{base}/{QUOTE}"


def symbol_argument(text: str) -> str:
    """`parse_symbol` as an argparse `type=`: an unknown form is a usage error that shows the forms."""
    try:
        return parse_symbol(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class TechnicalVerdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NO_DATA = "NO_DATA"  # too few bars for the indicators


class SentimentVerdict(StrEnum):
    BULLISH = "BULLISH"
    NEUTRAL = "NEUTRAL"
    BEARISH = "BEARISH"
    NO_DATA = "NO_DATA"


class KronosSignal(StrEnum):
    UP = "UP"
    DOWN = "DOWN"
    FLAT = "FLAT"
    UNAVAILABLE = "UNAVAILABLE"


class Action(StrEnum):
    ENTER = "ENTER"
    SKIP = "SKIP"


class Tier(StrEnum):
    TRIPLE_CONFIRMED = "triple_confirmed"
    KRONOS_ONLY = "kronos_only"


@dataclass(frozen=True)
class TechnicalResult:
    """Every indicator value behind the verdict; `checks` maps check name -> passed (None = switched off)."""

    verdict: TechnicalVerdict
    close: float | None = None
    rsi: float | None = None
    ema_fast: float | None = None
    ema_slow: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    macd_hist_prev: float | None = None
    checks: dict[str, bool | None] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class SentimentResult:
    """`score` is the final (possibly Fear & Greed blended) score; `news_score` the news-only mean."""

    verdict: SentimentVerdict
    score: float | None = None
    articles: int = 0
    veto: bool = False
    fear_greed: int | None = None
    reason: str = ""
    news_score: float | None = None
    # Headline of the article that triggered the veto (so the decision log says which news blocked it).
    veto_article: str | None = None


@dataclass(frozen=True)
class KronosResult:
    signal: KronosSignal
    confidence: float = 0.0
    actionable: bool = False
    method: str = ""
    last_close: float | None = None
    pred_close: float | None = None
    pct: float | None = None
    p_up: float | None = None
    p_down: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    # The skill guard (gates.kronos.skill_guard: block) found no live skill: never actionable then.
    no_skill: bool = False


@dataclass(frozen=True)
class GateResults:
    """The three gate verdicts for one symbol in one cycle."""

    symbol: str
    technical: TechnicalResult
    sentiment: SentimentResult
    kronos: KronosResult


@dataclass(frozen=True)
class Decision:
    """What the engine decided for one symbol, and every reason for it."""

    symbol: str
    action: Action
    tier: Tier | None
    notional: Decimal
    reasons: list[str]
    decided_at: datetime | None = None
    # One human-readable sentence behind the stable reason codes, for the log line and the journal.
    detail: str = ""
