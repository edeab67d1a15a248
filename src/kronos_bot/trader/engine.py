"""The decision engine: gate verdicts + open positions + account + risk state -> ENTER or SKIP, pure.

No I/O, no clock, no globals: everything (including `now`) comes in as arguments, so the whole decision
table is a parametrized unit test and a backtest decides exactly like the daemon.

Rules (issue 6; every threshold from `settings`):
  signal  BEARISH sentiment vetoes (`sentiment_bearish_veto`); NO_DATA sentiment is neutral or blocks
          (`engine.sentiment_no_data`); Kronos must be UP and actionable (`kronos_unavailable`,
          `kronos_not_up`, `kronos_low_confidence`; `kronos_no_skill` while the skill guard blocks).
          Technical PASS + BULLISH + Kronos -> triple_confirmed; Kronos confirmed otherwise ->
          kronos_only (optionally demanding a technical PASS).
  risk    one position per symbol, max open positions, cooldown after an exit, daily realized-loss limit
          (pauses entries until the next UTC day: the caller passes that day's realized P&L).
  size    base = fixed USD or equity x fraction; x tier multiplier; capped by max_position_notional and by
          buying power; below min_notional -> SKIP.
Every blocking condition found is reported (not just the first), each as a short stable code, plus one
readable `detail` sentence.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from kronos_bot.broker.base import Account
from kronos_bot.config import Settings
from kronos_bot.domain import (
    Action,
    Decision,
    GateResults,
    KronosSignal,
    SentimentVerdict,
    TechnicalVerdict,
    Tier,
)

CENT = Decimal("0.01")

# Stable reason codes (log consumers and the journal filter on these; never rename).
R_SENTIMENT_BEARISH = "sentiment_bearish_veto"
R_SENTIMENT_NO_DATA = "sentiment_no_data"
R_KRONOS_UNAVAILABLE = "kronos_unavailable"
R_KRONOS_NOT_UP = "kronos_not_up"
R_KRONOS_LOW_CONFIDENCE = "kronos_low_confidence"
R_KRONOS_NO_SKILL = "kronos_no_skill"
R_TECHNICAL_REQUIRED = "technical_not_pass"
R_POSITION_OPEN = "position_open"
R_MAX_OPEN = "max_open_positions"
R_COOLDOWN = "cooldown"
R_DAILY_LOSS = "daily_loss_limit"
R_BELOW_MIN_NOTIONAL = "below_min_notional"
R_INSUFFICIENT_BP = "insufficient_buying_power"
R_TRADING_BLOCKED = "trading_blocked"
R_CAPPED_MAX_NOTIONAL = "capped_max_position_notional"
R_CAPPED_BUYING_POWER = "capped_buying_power"


def dec(value: float | int | str | Decimal) -> Decimal:
    """Config floats -> Decimal through str, so 0.6 is 0.6 and not 0.59999999999999997779."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class RiskState:
    """Everything besides the gates that an entry depends on, gathered by the caller from journal + broker."""

    open_symbols: frozenset[str]
    account: Account
    last_exit_at: Mapping[str, datetime]
    daily_realized_pnl: Decimal


@dataclass(frozen=True)
class Sizing:
    """How a notional was arrived at; `reasons` says which caps bit."""

    base: Decimal
    multiplier: Decimal
    notional: Decimal
    reasons: tuple[str, ...]


def _signal(gates: GateResults, settings: Settings) -> tuple[Tier | None, list[str], list[str]]:
    """(tier or None, blocking reason codes, readable facts)."""
    reasons: list[str] = []
    facts: list[str] = []
    tech, sent, kr = gates.technical, gates.sentiment, gates.kronos

    sentiment_blocks = False
    if sent.verdict is SentimentVerdict.BEARISH:
        reasons.append(R_SENTIMENT_BEARISH)
        sentiment_blocks = True
    elif sent.verdict is SentimentVerdict.NO_DATA and settings.engine.sentiment_no_data == "block":
        reasons.append(R_SENTIMENT_NO_DATA)
        sentiment_blocks = True
    score = f" {sent.score:+.3f}" if sent.score is not None else ""
    facts.append(f"sentiment {sent.verdict.value}{score}")

    min_conf = settings.gates.kronos.min_confidence
    if kr.signal is KronosSignal.UNAVAILABLE:
        reasons.append(R_KRONOS_UNAVAILABLE)
        facts.append("kronos UNAVAILABLE")
    else:
        facts.append(f"kronos {kr.signal.value} conf {kr.confidence:.2f}")
        if kr.no_skill:
            reasons.append(R_KRONOS_NO_SKILL)
        elif kr.signal is not KronosSignal.UP:
            reasons.append(R_KRONOS_NOT_UP)
        elif not kr.actionable or kr.confidence < min_conf:
            reasons.append(R_KRONOS_LOW_CONFIDENCE)
    facts.append(f"technical {tech.verdict.value}")

    kronos_ok = not any(r.startswith("kronos_") for r in reasons)
    if not kronos_ok or sentiment_blocks:
        return None, reasons, facts
    if tech.verdict is TechnicalVerdict.PASS and sent.verdict is SentimentVerdict.BULLISH:
        return Tier.TRIPLE_CONFIRMED, reasons, facts
    if settings.engine.require_technical_for_kronos_only and tech.verdict is not TechnicalVerdict.PASS:
        reasons.append(R_TECHNICAL_REQUIRED)
        return None, reasons, facts
    return Tier.KRONOS_ONLY, reasons, facts


def _risk(symbol: str, risk: RiskState, settings: Settings, now: datetime) -> tuple[list[str], list[str]]:
    reasons: list[str] = []
    facts: list[str] = []
    if risk.account.trading_blocked:
        reasons.append(R_TRADING_BLOCKED)
        facts.append("account trading blocked")
    if symbol in risk.open_symbols:
        reasons.append(R_POSITION_OPEN)
        facts.append("position already open")
    elif len(risk.open_symbols) >= settings.risk.max_open_positions:
        reasons.append(R_MAX_OPEN)
        facts.append(f"{len(risk.open_symbols)}/{settings.risk.max_open_positions} positions open")
    last_exit = risk.last_exit_at.get(symbol)
    cooldown = timedelta(minutes=settings.risk.cooldown_minutes)
    if last_exit is not None and cooldown and now < last_exit + cooldown:
        reasons.append(R_COOLDOWN)
        left = int((last_exit + cooldown - now).total_seconds() // 60) + 1
        facts.append(f"cooldown {left} min left")
    limit = dec(settings.risk.daily_loss_limit_usd)
    if limit > 0 and risk.daily_realized_pnl <= -limit:
        reasons.append(R_DAILY_LOSS)
        facts.append(f"daily realized P&L {risk.daily_realized_pnl:.2f} <= -{limit}")
    return reasons, facts


def size_entry(tier: Tier, account: Account, settings: Settings) -> Sizing:
    """Notional for an entry of `tier`: base x multiplier, capped; rounded down to cents. Pure."""
    s = settings.sizing
    if s.mode == "fixed_usd":
        base = dec(s.fixed_usd)
    else:
        base = max(account.equity, Decimal(0)) * dec(s.equity_fraction)
    multiplier = dec(getattr(settings.engine.tiers, tier.value))
    notional = base * multiplier
    reasons: list[str] = []
    cap = dec(s.max_position_notional)
    if notional > cap:
        notional = cap
        reasons.append(R_CAPPED_MAX_NOTIONAL)
    bp = max(account.buying_power, Decimal(0))
    if notional > bp:
        notional = bp
        reasons.append(R_CAPPED_BUYING_POWER)
    notional = notional.quantize(CENT, rounding=ROUND_DOWN)
    return Sizing(base=base, multiplier=multiplier, notional=notional, reasons=tuple(reasons))


def decide(gates: GateResults, risk: RiskState, settings: Settings, now: datetime) -> Decision:
    """The decision for one symbol. Pure: same inputs, same Decision."""
    if now.tzinfo is None:
        raise ValueError("decide() needs a tz-aware `now`")
    symbol = gates.symbol
    tier, signal_reasons, facts = _signal(gates, settings)
    risk_reasons, risk_facts = _risk(symbol, risk, settings, now)
    reasons = signal_reasons + risk_reasons
    facts += risk_facts

    notional = Decimal(0)
    if tier is not None and not reasons:
        sizing = size_entry(tier, risk.account, settings)
        facts.append(f"size {sizing.base:.2f} x {sizing.multiplier} -> {sizing.notional} USD")
        if sizing.notional < dec(settings.sizing.min_notional):
            capped_by_bp = R_CAPPED_BUYING_POWER in sizing.reasons
            reasons.append(R_INSUFFICIENT_BP if capped_by_bp else R_BELOW_MIN_NOTIONAL)
            facts.append(f"below min notional {settings.sizing.min_notional}")
        else:
            notional = sizing.notional
            if not reasons:
                detail = f"ENTER {tier.value}: " + "; ".join(facts)
                return Decision(
                    symbol=symbol,
                    action=Action.ENTER,
                    tier=tier,
                    notional=notional,
                    reasons=[tier.value, *sizing.reasons],
                    decided_at=now,
                    detail=detail,
                )
    detail = "SKIP: " + "; ".join(facts)
    return Decision(
        symbol=symbol,
        action=Action.SKIP,
        tier=tier,
        notional=Decimal(0),
        reasons=reasons,
        decided_at=now,
        detail=detail,
    )


def decide_all(all_gates: Sequence[GateResults], risk: RiskState, settings: Settings, now: datetime) -> list[Decision]:
    """Decisions for every symbol of one cycle, in the given order.

    An ENTER counts against `max_open_positions` and buying power for the symbols after it in the same
    cycle, so three agreeing symbols with room for one position enter once, not three times. Put the
    symbols in priority order (e.g. the configured order, or by Kronos confidence).
    """
    decisions: list[Decision] = []
    open_symbols = set(risk.open_symbols)
    account = risk.account
    for gates in all_gates:
        state = replace(risk, open_symbols=frozenset(open_symbols), account=account)
        decision = decide(gates, state, settings, now)
        decisions.append(decision)
        if decision.action is Action.ENTER:
            open_symbols.add(decision.symbol)
            account = replace(account, buying_power=account.buying_power - decision.notional)
    return decisions


def risk_state(
    open_symbols: Collection[str],
    account: Account,
    last_exit_at: Mapping[str, datetime],
    daily_realized_pnl: Decimal,
) -> RiskState:
    """Convenience constructor (accepts any collection of symbols)."""
    return RiskState(frozenset(open_symbols), account, dict(last_exit_at), daily_realized_pnl)
