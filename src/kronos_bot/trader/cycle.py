"""One entry cycle: reconcile -> bars -> three gates -> engine -> journal + `decision` log -> orders.

The daemon (`trader.py`), `kronos-bot once` and the end-to-end tests all run exactly this code. Each
stage is timed (`cycle.end` carries the durations); one symbol's failure never stops the others, and an
outage of a whole stage (market data, news, forecaster, broker) turns into SKIP decisions with the reason,
never into a crash or a guessed value.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from kronos_bot.broker.base import BrokerAuthError, BrokerUnavailable
from kronos_bot.config import Settings
from kronos_bot.domain import (
    Action,
    Decision,
    GateResults,
    KronosResult,
    KronosSignal,
    SentimentResult,
)
from kronos_bot.forecast_types import Forecaster
from kronos_bot.gates.forecast_cache import ForecastCache, kronos_gates
from kronos_bot.gates.kronos import unavailable
from kronos_bot.gates.sentiment import sentiment_gates
from kronos_bot.gates.technical import technical_gate
from kronos_bot.logs import bound_context, get_logger
from kronos_bot.market.bars import BarsProblem
from kronos_bot.market.news import FearGreedProvider, NewsFeed
from kronos_bot.trader.engine import decide_all
from kronos_bot.trader.events import NO_EVENTS, CycleFinished, TraderEvents, cycle_decisions
from kronos_bot.trader.execution import EntryOutcome, Executor
from kronos_bot.trader.health import DegradedTracker
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.prices import PriceBook
from kronos_bot.trader.reconcile import Reconciler
from kronos_bot.trader.skill_keeper import SkillKeeper

log = get_logger("kronos_bot.trader.cycle")


@dataclass
class CycleReport:
    """What one cycle did: one decision (+ gates when they ran) per symbol, entries, stage durations."""

    cycle_id: str
    started_at: datetime
    decisions: list[Decision] = field(default_factory=list)
    gates: dict[str, GateResults] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    entries: list[EntryOutcome] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    status: str = "ok"  # ok | partial | failed (see cycle_status)
    journal_cycle_id: int | None = None


R_DATA_INVALID = "data_invalid"
MARKET_DATA_FIX = (
    "check the machine's network and DNS (Alpaca's data API, data.alpaca.markets), or bars.data_url_override; "
    "the symbols are skipped until the bars come back, exits keep running"
)
# Decision reasons that say a part was missing, not that the market said no.
OUTAGE_REASONS = frozenset({R_DATA_INVALID, "kronos_unavailable", "broker_unavailable", "broker_auth"})


def cycle_status(report: CycleReport, degraded: Sequence[str]) -> str:
    """`ok` (every part answered), `partial` (decisions were made, but a part was down, a symbol had no
    usable data or an entry's outcome is unknown) or `failed` (not one symbol had usable bars)."""
    if report.decisions and all(R_DATA_INVALID in d.reasons for d in report.decisions):
        return "failed"
    outage = any(OUTAGE_REASONS.intersection(d.reasons) for d in report.decisions)
    troubled = any(e.status in ("unknown", "unavailable", "error") for e in report.entries)
    return "partial" if degraded or outage or troubled else "ok"


def report_broker_down(health: DegradedTracker, exc: BrokerUnavailable, what: str) -> None:
    """Refused keys are their own degraded state (with the fix); anything else is `broker`."""
    if isinstance(exc, BrokerAuthError):
        health.set("broker_auth", str(exc), fix=BrokerAuthError.FIX)
    else:
        health.set("broker", f"{what}: {exc}", fix=BrokerUnavailable.FIX)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def cycle_slot(now: datetime, interval_seconds: int = 0) -> datetime:
    """The schedule slot a cycle belongs to; it names the cycle's orders (deterministic client_order_id).

    A re-run of the same slot (a retry, a restart mid-cycle) finds the same order instead of buying
    twice; a later slot gets new ids. Cron cycles are minutes apart, so the minute is the slot; with
    `entry_interval_seconds` the slot is that interval.
    """
    if interval_seconds:
        epoch = int(now.timestamp()) // interval_seconds * interval_seconds
        return datetime.fromtimestamp(epoch, tz=UTC)
    return now.replace(second=0, microsecond=0)


def decision_event(decision: Decision, gates: GateResults | None) -> dict[str, Any]:
    """The keys of the `decision` log event (and of `kronos-bot once`'s table): every gate number."""
    tech = gates.technical if gates else None
    sent = gates.sentiment if gates else None
    kron = gates.kronos if gates else None
    return {
        "symbol": decision.symbol,
        "action": decision.action.value,
        "tier": decision.tier.value if decision.tier else None,
        "notional": str(decision.notional),
        "reasons": list(decision.reasons),
        "detail": decision.detail,
        "technical": None
        if tech is None
        else {
            "rsi": _round(tech.rsi, 3),
            "ema_fast": _round(tech.ema_fast),
            "ema_slow": _round(tech.ema_slow),
            "macd": _round(tech.macd),
            "macd_hist": _round(tech.macd_hist),
            "checks": dict(tech.checks),
            "verdict": tech.verdict.value,
        },
        "sentiment": None
        if sent is None
        else {
            "score": _round(sent.score, 4),
            "articles": sent.articles,
            "veto": sent.veto,
            "verdict": sent.verdict.value,
            "fear_greed": sent.fear_greed,
            **({"reason": sent.reason} if sent.reason else {}),
        },
        "kronos": None
        if kron is None
        else {
            "last_close": _round(kron.last_close),
            "pred_close": _round(kron.pred_close),
            "pct": _round(kron.pct, 6),
            "p_up": _round(kron.p_up, 4),
            "confidence": _round(kron.confidence, 4),
            "signal": kron.signal.value,
            "actionable": kron.actionable,
            "method": kron.method,
            **({"reason": kron.reason} if kron.reason else {}),
        },
    }


class EntryCycle:
    """Wires the stages of one entry cycle; long-lived (its caches span cycles)."""

    def __init__(
        self,
        settings: Settings,
        *,
        journal: Journal,
        executor: Executor,
        reconciler: Reconciler,
        market: Any,
        news_feed: NewsFeed,
        forecaster: Forecaster,
        health: DegradedTracker,
        fear_greed: FearGreedProvider | None = None,
        forecast_cache: ForecastCache | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        price_book: PriceBook | None = None,
        skill: SkillKeeper | None = None,
        events: TraderEvents = NO_EVENTS,
    ) -> None:
        self.settings = settings
        self.events = events
        self.journal = journal
        self.executor = executor
        self.reconciler = reconciler
        self.market = market
        self.news_feed = news_feed
        self.forecaster = forecaster
        self.health = health
        self.fear_greed = fear_greed
        self.forecast_cache = forecast_cache or ForecastCache()
        self.clock = clock
        self.price_book = price_book
        self.skill = skill
        self.last_report: CycleReport | None = None

    def run(self, *, trade: bool = True, now: datetime | None = None) -> CycleReport:
        """Run one cycle; with `trade=False` decisions are made and logged but no order is sent."""
        now = now or self.clock()
        report = CycleReport(cycle_id=now.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6], started_at=now)
        journal_cycle = report.journal_cycle_id = self.journal.start_cycle("entry", now)
        with bound_context(cycle_id=report.cycle_id):
            log.info("cycle.start", at=now.isoformat(), symbols=self.settings.symbols, trade=trade)
            try:
                self._run(report, now, trade)
                report.status = cycle_status(report, [d.name for d in self.health.active()])
            except Exception as exc:  # a cycle never takes the daemon down; the next one starts afresh
                report.status = "failed"
                log.exception("cycle.error", error=f"{type(exc).__name__}: {exc}")
            finally:
                stats = {
                    "durations": report.durations,
                    "entered": [d.symbol for d in report.decisions if d.action is Action.ENTER],
                    "decisions": len(report.decisions),
                }
                self.journal.end_cycle(journal_cycle, self.clock(), report.status, stats)
                log.info(
                    "cycle.end",
                    status=report.status,
                    decisions=len(report.decisions),
                    entered=stats["entered"],
                    durations={k: round(v, 3) for k, v in report.durations.items()},
                    total_seconds=round(sum(report.durations.values()), 3),
                )
                self.events.cycle_finished(
                    CycleFinished(
                        started_at=now,
                        seconds=sum(report.durations.values()),
                        status=report.status,
                        decisions=cycle_decisions(report.decisions),
                        entered=sum(1 for d in report.decisions if d.action is Action.ENTER),
                    )
                )
        self.last_report = report
        return report

    @contextmanager
    def _stage(self, report: CycleReport, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            report.durations[name] = report.durations.get(name, 0.0) + time.perf_counter() - start

    def _run(self, report: CycleReport, now: datetime, trade: bool) -> None:
        symbols = list(self.settings.symbols)
        with self._stage(report, "reconcile"):
            self._reconcile(now)

        with self._stage(report, "bars"):
            bars, problems = self._bars(symbols, now)
            if self.price_book is not None:
                # The last closed bar's range: the exit monitor's second reference for a suspect price.
                self.price_book.note_bars(
                    {s: (Decimal(str(df["low"].iloc[-1])), Decimal(str(df["high"].iloc[-1]))) for s, df in bars.items()}
                )

        with self._stage(report, "technical"):
            technical = {s: technical_gate(df, self.settings.gates.technical) for s, df in bars.items()}
        with self._stage(report, "sentiment"):
            sentiment = self._sentiment(list(bars), now)
        with self._stage(report, "kronos"):
            kronos = self._kronos(bars)
        if self.skill is not None:
            with self._stage(report, "skill"):
                kronos = self._grade(bars, kronos, now)

        with self._stage(report, "engine"):
            gate_results = [GateResults(s, technical[s], sentiment[s], kronos[s]) for s in symbols if s in bars]
            decisions_by_symbol = self._decide(gate_results, now)
            for symbol, problem in problems.items():
                decisions_by_symbol[symbol] = Decision(
                    symbol=symbol,
                    action=Action.SKIP,
                    tier=None,
                    notional=Decimal(0),
                    reasons=[R_DATA_INVALID],
                    decided_at=now,
                    detail=f"bars: {problem}",
                )
        report.gates = {g.symbol: g for g in gate_results}
        report.decisions = [decisions_by_symbol[s] for s in symbols if s in decisions_by_symbol]

        with self._stage(report, "journal"):
            decision_ids = self._record(report)
            if self.skill is not None:
                self.skill.note_decisions(report.decisions, now)

        if trade:
            with self._stage(report, "orders"):
                hints = {s: Decimal(str(df["close"].iloc[-1])) for s, df in bars.items()}
                entering = [d for d in report.decisions if d.action is Action.ENTER]
                ids = [decision_ids[d.symbol] for d in entering]
                cycle_time = cycle_slot(now, self.settings.schedule.entry_interval_seconds)
                report.entries = self.executor.execute(entering, cycle_time, ids, price_hints=hints)

    def _reconcile(self, now: datetime) -> None:
        try:
            result = self.reconciler.run(now)
        except BrokerUnavailable as exc:
            self._broker_down(exc, "reconcile failed")
            return
        error = getattr(result, "error", None)
        if error is not None:
            self._broker_down(error, "reconcile incomplete")
        else:
            self.health.clear("broker")
            self.health.clear("broker_auth")

    def _broker_down(self, exc: BrokerUnavailable, what: str) -> None:
        report_broker_down(self.health, exc, what)

    def _bars(self, symbols: list[str], now: datetime) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
        try:
            fetched = self.market.closed_bars(symbols, now)
        except Exception as exc:  # the data client's own failures are per symbol; anything else is an outage
            self.health.set("market_data", f"bars failed: {exc}")
            return {}, dict.fromkeys(symbols, f"fetch_failed: {exc}")
        bars: dict[str, pd.DataFrame] = {}
        problems: dict[str, str] = {}
        for symbol in symbols:
            value = fetched.get(symbol)
            if isinstance(value, pd.DataFrame):
                bars[symbol] = value
            elif isinstance(value, BarsProblem):
                problems[symbol] = f"{value.reason}: {value.detail}" if value.detail else value.reason
            else:
                problems[symbol] = "no_bars"
        failed = [s for s, p in problems.items() if p.startswith("fetch_failed")]
        if failed:
            cause = problems[failed[0]].removeprefix("fetch_failed").lstrip(": ")
            self.health.set("market_data", f"bars fetch failed for {', '.join(failed)}: {cause}", fix=MARKET_DATA_FIX)
        else:
            self.health.clear("market_data")
        return bars, problems

    def _sentiment(self, symbols: list[str], now: datetime) -> dict[str, SentimentResult]:
        if not symbols:
            return {}
        results = sentiment_gates(symbols, now, self.settings.gates.sentiment, self.news_feed, self.fear_greed)
        self.health.update(
            "news", f"news fetch failed: {self.news_feed.last_error}" if self.news_feed.last_error else None
        )
        return results

    def _kronos(self, bars: dict[str, pd.DataFrame]) -> dict[str, KronosResult]:
        if not bars:
            return {}
        try:
            return kronos_gates(
                bars,
                self.forecaster,
                self.settings.gates.kronos,
                self.forecast_cache,
                max_context=self.settings.forecaster.max_context,
            )
        except Exception as exc:  # never let a forecaster surprise stop the cycle: the gate just blocks
            log.exception("forecast.error", error=str(exc))
            method = self.settings.gates.kronos.method
            return {
                s: unavailable(f"forecast error: {exc}", method, float(df["close"].iloc[-1])) for s, df in bars.items()
            }

    def _decide(self, gate_results: list[GateResults], now: datetime) -> dict[str, Decision]:
        try:
            risk = self.executor.risk_state(now)
        except BrokerUnavailable as exc:
            self._broker_down(exc, "account unavailable")
            reason = "broker_auth" if isinstance(exc, BrokerAuthError) else "broker_unavailable"
            return {
                g.symbol: Decision(
                    symbol=g.symbol,
                    action=Action.SKIP,
                    tier=None,
                    notional=Decimal(0),
                    reasons=[reason],
                    decided_at=now,
                    detail=f"account: {exc}",
                )
                for g in gate_results
            }
        return {d.symbol: d for d in decide_all(gate_results, risk, self.settings, now)}

    def _grade(
        self, bars: dict[str, pd.DataFrame], kronos: dict[str, KronosResult], now: datetime
    ) -> dict[str, KronosResult]:
        """Record and score forecasts, follow shadows; while the guard blocks, Kronos is not actionable."""
        assert self.skill is not None
        forecasts = {}
        for symbol, df in bars.items():
            forecast = self.forecast_cache.latest(symbol, df.index[-1].to_pydatetime())
            if forecast is not None:
                forecasts[symbol] = forecast
        self.skill.after_gates(bars, forecasts, self.forecast_cache.last_model, now)
        if not self.skill.blocking:
            return kronos
        return {
            s: k
            if k.signal is KronosSignal.UNAVAILABLE
            else replace(k, actionable=False, no_skill=True, reason=f"{k.reason}; not actionable: no live skill")
            for s, k in kronos.items()
        }

    def _record(self, report: CycleReport) -> dict[str, int | None]:
        fingerprint = self.settings.fingerprint()
        revision = self._model_revision()
        ids: dict[str, int | None] = {}
        for decision in report.decisions:
            gates = report.gates.get(decision.symbol)
            event = decision_event(decision, gates)
            if self.skill is not None and self.skill.guard_on:
                event["notes"] = ["kronos_no_skill"]
            report.events.append({"event": "decision", "ts": report.started_at.isoformat(), **event})
            log.info("decision", **event)
            try:
                ids[decision.symbol] = self.journal.record_decision(
                    decision,
                    gates,
                    cycle_id=report.journal_cycle_id,
                    config_fingerprint=fingerprint,
                    model_revision=revision,
                )
            except Exception as exc:  # the log line above already carries the decision
                log.error("journal.write_failed", symbol=decision.symbol, error=str(exc))
                ids[decision.symbol] = None
        return ids

    def _model_revision(self) -> str | None:
        """For the journal; asks only an attached forecaster (a lookup must never load a model)."""
        attached = getattr(self.forecaster, "attached_model_info", None)
        info = attached() if callable(attached) else None
        if not info:
            return None
        revision = info.get("model_revision") or info.get("revision") or info.get("model_sha256")
        return str(revision) if revision else None
