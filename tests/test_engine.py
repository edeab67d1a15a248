"""The engine's decision table (every gate combination), risk rules and Decimal sizing."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from kronos_bot.broker.base import Account
from kronos_bot.config import Settings
from kronos_bot.domain import (
    Action,
    GateResults,
    KronosResult,
    KronosSignal,
    SentimentResult,
    SentimentVerdict,
    TechnicalResult,
    TechnicalVerdict,
    Tier,
)
from kronos_bot.trader import engine

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
RICH = Account(cash=Decimal("10000"), buying_power=Decimal("10000"), equity=Decimal("10000"))


def settings(**sections: Any) -> Settings:
    return Settings(**sections)


def gates(
    tech: TechnicalVerdict = TechnicalVerdict.PASS,
    sent: SentimentVerdict = SentimentVerdict.BULLISH,
    kronos: KronosSignal = KronosSignal.UP,
    confidence: float = 0.7,
    actionable: bool | None = None,
    symbol: str = "BTC/USD",
) -> GateResults:
    if actionable is None:
        actionable = kronos is KronosSignal.UP and confidence >= 0.55
    return GateResults(
        symbol=symbol,
        technical=TechnicalResult(verdict=tech, rsi=55.0),
        sentiment=SentimentResult(verdict=sent, score=0.3),
        kronos=KronosResult(
            signal=kronos,
            confidence=confidence if kronos is not KronosSignal.UNAVAILABLE else 0.0,
            actionable=actionable,
        ),
    )


def risk(
    open_symbols: tuple[str, ...] = (),
    account: Account = RICH,
    last_exit: dict[str, datetime] | None = None,
    pnl: Decimal = Decimal(0),
) -> engine.RiskState:
    return engine.risk_state(open_symbols, account, last_exit or {}, pnl)


# ----- the decision table: every combination of the three gates -----

TECH = list(TechnicalVerdict)
SENT = list(SentimentVerdict)
# (signal, confidence, actionable): UP-actionable, UP-low-confidence, DOWN, FLAT, UNAVAILABLE
KRONOS = [
    (KronosSignal.UP, 0.7, True),
    (KronosSignal.UP, 0.5, False),
    (KronosSignal.DOWN, 0.8, False),
    (KronosSignal.FLAT, 0.6, False),
    (KronosSignal.UNAVAILABLE, 0.0, False),
]


def expected(
    tech: TechnicalVerdict,
    sent: SentimentVerdict,
    kr: tuple[KronosSignal, float, bool],
    no_data: str,
    require_tech: bool,
) -> tuple[Action, Tier | None, set[str]]:
    reasons: set[str] = set()
    if sent is SentimentVerdict.BEARISH:
        reasons.add("sentiment_bearish_veto")
    if sent is SentimentVerdict.NO_DATA and no_data == "block":
        reasons.add("sentiment_no_data")
    signal, _, actionable = kr
    if signal is KronosSignal.UNAVAILABLE:
        reasons.add("kronos_unavailable")
    elif signal is not KronosSignal.UP:
        reasons.add("kronos_not_up")
    elif not actionable:
        reasons.add("kronos_low_confidence")
    if reasons:
        return Action.SKIP, None, reasons
    if tech is TechnicalVerdict.PASS and sent is SentimentVerdict.BULLISH:
        return Action.ENTER, Tier.TRIPLE_CONFIRMED, {"triple_confirmed"}
    if require_tech and tech is not TechnicalVerdict.PASS:
        return Action.SKIP, None, {"technical_not_pass"}
    return Action.ENTER, Tier.KRONOS_ONLY, {"kronos_only"}


@pytest.mark.parametrize("no_data", ["neutral", "block"])
@pytest.mark.parametrize("require_tech", [False, True])
@pytest.mark.parametrize(("tech", "sent", "kr"), list(itertools.product(TECH, SENT, KRONOS)))
def test_decision_table(tech, sent, kr, no_data, require_tech) -> None:
    s = settings(engine={"sentiment_no_data": no_data, "require_technical_for_kronos_only": require_tech})
    decision = engine.decide(gates(tech, sent, kr[0], kr[1], kr[2]), risk(), s, NOW)
    action, tier, reasons = expected(tech, sent, kr, no_data, require_tech)
    assert decision.action is action
    assert set(decision.reasons) == reasons
    assert decision.detail
    if action is Action.ENTER:
        assert decision.tier is tier
        assert decision.notional == (Decimal("100.00") if tier is Tier.TRIPLE_CONFIRMED else Decimal("60.00"))
    else:
        assert decision.notional == 0


def test_confidence_threshold_from_settings_even_if_gate_says_actionable() -> None:
    s = settings(gates={"kronos": {"min_confidence": 0.8}})
    d = engine.decide(gates(confidence=0.7, actionable=True), risk(), s, NOW)
    assert d.action is Action.SKIP and d.reasons == ["kronos_low_confidence"]


def test_decided_at_and_naive_now_refused() -> None:
    d = engine.decide(gates(), risk(), settings(), NOW)
    assert d.decided_at == NOW
    with pytest.raises(ValueError):
        engine.decide(gates(), risk(), settings(), NOW.replace(tzinfo=None))


# ----- risk rules -----


def test_position_open_blocks_same_symbol() -> None:
    d = engine.decide(gates(), risk(open_symbols=("BTC/USD",)), settings(), NOW)
    assert d.action is Action.SKIP and d.reasons == ["position_open"]


def test_max_open_positions() -> None:
    s = settings(risk={"max_open_positions": 2})
    d = engine.decide(gates(), risk(open_symbols=("ETH/USD", "SOL/USD")), s, NOW)
    assert d.reasons == ["max_open_positions"]
    assert engine.decide(gates(), risk(open_symbols=("ETH/USD",)), s, NOW).action is Action.ENTER


@pytest.mark.parametrize(("minutes_ago", "blocked"), [(10, True), (59, True), (60, False), (120, False)])
def test_cooldown_after_exit(minutes_ago: int, blocked: bool) -> None:
    s = settings(risk={"cooldown_minutes": 60})
    r = risk(last_exit={"BTC/USD": NOW - timedelta(minutes=minutes_ago), "ETH/USD": NOW})
    d = engine.decide(gates(), r, s, NOW)
    assert (d.reasons == ["cooldown"]) is blocked


def test_cooldown_zero_is_off() -> None:
    d = engine.decide(gates(), risk(last_exit={"BTC/USD": NOW}), settings(risk={"cooldown_minutes": 0}), NOW)
    assert d.action is Action.ENTER


@pytest.mark.parametrize(
    ("pnl", "limit", "blocked"),
    [
        ("-49.99", 50, False),
        ("-50", 50, True),
        ("-80", 50, True),
        ("-1000", 0, False),
        ("20", 50, False),
    ],
)
def test_daily_loss_limit(pnl: str, limit: float, blocked: bool) -> None:
    s = settings(risk={"daily_loss_limit_usd": limit})
    d = engine.decide(gates(), risk(pnl=Decimal(pnl)), s, NOW)
    assert ("daily_loss_limit" in d.reasons) is blocked


def test_all_blocking_reasons_reported_together() -> None:
    s = settings(risk={"max_open_positions": 1})
    r = risk(open_symbols=("ETH/USD",), last_exit={"BTC/USD": NOW}, pnl=Decimal("-100"))
    d = engine.decide(gates(sent=SentimentVerdict.BEARISH, kronos=KronosSignal.DOWN), r, s, NOW)
    assert d.reasons == [
        "sentiment_bearish_veto",
        "kronos_not_up",
        "max_open_positions",
        "cooldown",
        "daily_loss_limit",
    ]


def test_trading_blocked_account() -> None:
    acct = Account(cash=Decimal(1000), buying_power=Decimal(1000), equity=Decimal(1000), trading_blocked=True)
    assert engine.decide(gates(), risk(account=acct), settings(), NOW).reasons == ["trading_blocked"]


# ----- sizing (Decimal throughout) -----


def test_fixed_usd_times_tier_exact_decimal() -> None:
    s = settings(sizing={"fixed_usd": 33.33}, engine={"tiers": {"kronos_only": 0.6}})
    d = engine.decide(gates(tech=TechnicalVerdict.FAIL), risk(), s, NOW)
    assert d.tier is Tier.KRONOS_ONLY
    assert d.notional == Decimal("19.99")  # 33.33 x 0.6 = 19.998 -> rounded DOWN to cents
    assert isinstance(d.notional, Decimal)


def test_equity_fraction() -> None:
    s = settings(sizing={"mode": "equity_fraction", "equity_fraction": 0.05})
    acct = Account(cash=Decimal("5000"), buying_power=Decimal("5000"), equity=Decimal("12345.67"))
    d = engine.decide(gates(), risk(account=acct), s, NOW)
    assert d.notional == Decimal("617.28")  # 12345.67 x 0.05 = 617.2835


def test_capped_by_max_position_notional() -> None:
    s = settings(sizing={"fixed_usd": 5000, "max_position_notional": 1000})
    d = engine.decide(gates(), risk(), s, NOW)
    assert d.notional == Decimal("1000.00")
    assert "capped_max_position_notional" in d.reasons


def test_capped_by_buying_power() -> None:
    acct = Account(cash=Decimal("42.5"), buying_power=Decimal("42.5"), equity=Decimal("500"))
    d = engine.decide(gates(), risk(account=acct), settings(), NOW)
    assert d.action is Action.ENTER and d.notional == Decimal("42.50")
    assert "capped_buying_power" in d.reasons


def test_insufficient_buying_power() -> None:
    acct = Account(cash=Decimal("5"), buying_power=Decimal("5"), equity=Decimal("500"))
    d = engine.decide(gates(), risk(account=acct), settings(), NOW)
    assert d.action is Action.SKIP and d.reasons == ["insufficient_buying_power"]


def test_below_min_notional() -> None:
    s = settings(sizing={"fixed_usd": 15, "min_notional": 10})
    d = engine.decide(gates(tech=TechnicalVerdict.FAIL), risk(), s, NOW)  # 15 x 0.6 = 9
    assert d.action is Action.SKIP and d.reasons == ["below_min_notional"]


# ----- one cycle over several symbols -----


def test_decide_all_respects_max_open_positions_within_cycle() -> None:
    s = settings(risk={"max_open_positions": 2})
    all_gates = [gates(symbol=sym) for sym in ("BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD")]
    decisions = engine.decide_all(all_gates, risk(open_symbols=("XRP/USD",)), s, NOW)
    assert [d.action for d in decisions] == [Action.ENTER, Action.SKIP, Action.SKIP, Action.SKIP]
    assert decisions[1].reasons == ["max_open_positions"]


def test_decide_all_spends_buying_power_within_cycle() -> None:
    acct = Account(cash=Decimal("150"), buying_power=Decimal("150"), equity=Decimal("150"))
    decisions = engine.decide_all(
        [gates(symbol="BTC/USD"), gates(symbol="ETH/USD"), gates(symbol="SOL/USD")], risk(account=acct), settings(), NOW
    )
    assert [d.notional for d in decisions] == [Decimal("100.00"), Decimal("50.00"), Decimal(0)]
    assert decisions[2].reasons == ["insufficient_buying_power"]


def test_decide_is_pure() -> None:
    g, r, s = gates(), risk(), settings()
    assert engine.decide(g, r, s, NOW) == engine.decide(g, r, s, NOW)
