"""The trader's Prometheus metrics: what happened (counters and histograms fed by TraderEvents) and
where things stand (gauges read at scrape time from the journal, the price book and the skill keeper).

Scrape-time reads cost a few SQLite queries and never touch the network, so a scrape can neither slow a
cycle nor trigger a request to Alpaca. Every name starts with `kronos_bot_`; they are listed in the
README (section Metrics). Money gauges are float USD (Prometheus has no decimals); the journal keeps
the exact values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kronos_bot import __version__
from kronos_bot.broker.base import Account
from kronos_bot.trader.events import CycleFinished, DegradedChange, NoEvents, TraderStarted
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.records import PositionRecord

# The parts DegradedTracker knows; each gets a 0/1 gauge from the start, so a dashboard shows them all.
DEGRADED_COMPONENTS = ("broker", "broker_auth", "market_data", "news", "forecaster")
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TICK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# (gauge suffix, summary key, help) of the 30-day forecast skill the guard judges.
SKILL_GAUGES = (
    ("forecast_hit_rate", "hit_rate", "Share of scored forecasts (last 30 days) whose direction was right."),
    ("forecast_brier", "brier", "Brier score of P(up), last 30 days (lower is better; no-change scores 0.25)."),
    ("forecast_brier_skill", "brier_skill", "Brier skill score vs no-change, last 30 days (> 0: better)."),
    ("forecast_crps_skill", "crps_skill", "CRPS skill score vs no-change, last 30 days (> 0: better)."),
    ("forecast_coverage_p10_p90", "coverage_p10_p90", "Share of outcomes inside the p10-p90 band, last 30 days."),
)


class TraderMetrics(NoEvents):
    """One registry per trader (never the process-global one, so tests can build several)."""

    def __init__(
        self,
        journal: Journal,
        *,
        price_of: Callable[[str], Decimal | None] = lambda _symbol: None,
        skill_summary: Callable[[], dict[str, Any] | None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Info("kronos_bot", "The trader: version, mode, broker, symbols.", registry=r)
        self.info.info({"version": __version__})
        self.decisions = Counter(
            "kronos_bot_decisions", "Entry decisions by action (one per symbol per cycle).", ["action"], registry=r
        )
        self.decision_reasons = Counter(
            "kronos_bot_decision_reasons",
            "Reasons given by SKIP decisions (a decision may give several).",
            ["reason"],
            registry=r,
        )
        self.entries = Counter("kronos_bot_entries", "Positions opened, by size tier.", ["tier"], registry=r)
        self.exits = Counter("kronos_bot_exits", "Positions closed, by exit reason.", ["reason"], registry=r)
        self.cycles = Counter(
            "kronos_bot_cycles", "Entry cycles by outcome (ok, partial, failed).", ["status"], registry=r
        )
        self.cycle_seconds = Histogram(
            "kronos_bot_cycle_seconds", "Duration of one entry cycle.", buckets=CYCLE_BUCKETS, registry=r
        )
        self.exit_tick_seconds = Histogram(
            "kronos_bot_exit_tick_seconds", "Duration of one exit-monitor tick.", buckets=TICK_BUCKETS, registry=r
        )
        self.last_cycle = Gauge(
            "kronos_bot_last_successful_cycle_timestamp_seconds",
            "Unix time of the last entry cycle that finished ok.",
            registry=r,
        )
        self.degraded_gauge = Gauge(
            "kronos_bot_degraded",
            "1 while a part is degraded (see degraded.start in the log).",
            ["component"],
            registry=r,
        )
        for component in DEGRADED_COMPONENTS:
            self.degraded_gauge.labels(component).set(0)
        self.equity = Gauge("kronos_bot_equity_usd", "Account equity at the last reading.", registry=r)
        self.cash = Gauge("kronos_bot_cash_usd", "Account cash at the last reading.", registry=r)
        self.buying_power = Gauge("kronos_bot_buying_power_usd", "Buying power at the last reading.", registry=r)
        self.account_time = Gauge(
            "kronos_bot_account_timestamp_seconds", "Unix time of the last account reading.", registry=r
        )
        r.register(_JournalCollector(journal, price_of, skill_summary, clock))

    def trader_started(self, event: TraderStarted) -> None:
        self.info.info(
            {"version": __version__, "mode": event.mode, "broker": event.broker, "symbols": ",".join(event.symbols)}
        )

    def position_opened(self, position: PositionRecord) -> None:
        self.entries.labels(position.tier or "unknown").inc()

    def position_closed(self, position: PositionRecord) -> None:
        self.exits.labels(position.exit_reason or "unknown").inc()

    def degraded(self, change: DegradedChange) -> None:
        self.degraded_gauge.labels(change.component).set(1 if change.active else 0)

    def cycle_finished(self, event: CycleFinished) -> None:
        self.cycles.labels(event.status).inc()
        self.cycle_seconds.observe(event.seconds)
        for decision in event.decisions:
            self.decisions.labels(decision.action).inc()
            if decision.action != "ENTER":
                for reason in decision.reasons:
                    self.decision_reasons.labels(reason).inc()
        if event.status == "ok":
            self.last_cycle.set(event.started_at.timestamp() + event.seconds)

    def exit_tick(self, seconds: float, closed: int) -> None:
        self.exit_tick_seconds.observe(seconds)

    def account_seen(self, account: Account, at: datetime) -> None:
        self.equity.set(float(account.equity))
        self.cash.set(float(account.cash))
        self.buying_power.set(float(account.buying_power))
        self.account_time.set(at.timestamp())


class _JournalCollector(Collector):
    """Gauges computed at scrape time: positions, P&L, forecast skill."""

    def __init__(
        self,
        journal: Journal,
        price_of: Callable[[str], Decimal | None],
        skill_summary: Callable[[], dict[str, Any] | None],
        clock: Callable[[], datetime],
    ) -> None:
        self.journal = journal
        self.price_of = price_of
        self.skill_summary = skill_summary
        self.clock = clock

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Fixed names without reading anything (auto_describe would call collect() at registration).
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        positions = self.journal.open_positions()
        families = {f.name: f for f in self._families()}
        families["kronos_bot_open_positions"].add_metric([], len(positions))
        for p in positions:
            price = self.price_of(p.symbol)
            if price is not None:
                families["kronos_bot_unrealized_pnl_usd"].add_metric([p.symbol], float((price - p.entry_price) * p.qty))
        now = self.clock()
        families["kronos_bot_realized_pnl_today_usd"].add_metric([], float(self.journal.realized_pnl_for_day(now)))
        closed, total = self.journal.realized_totals()
        families["kronos_bot_realized_pnl_usd"].add_metric([], float(total))
        families["kronos_bot_closed_trades"].add_metric([], closed)
        summary = self.skill_summary() or {}
        if summary.get("n"):
            families["kronos_bot_forecast_scored"].add_metric([], summary["n"])
            for suffix, key, _help in SKILL_GAUGES:
                value = summary.get(key)
                if value is not None:
                    families[f"kronos_bot_{suffix}"].add_metric([], float(value))
        yield from families.values()

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("kronos_bot_open_positions", "Positions open now."),
            GaugeMetricFamily(
                "kronos_bot_unrealized_pnl_usd",
                "Unrealized P&L of each open position at the last accepted price.",
                labels=["symbol"],
            ),
            GaugeMetricFamily("kronos_bot_realized_pnl_usd", "Realized P&L of every closed position."),
            GaugeMetricFamily("kronos_bot_realized_pnl_today_usd", "Realized P&L of positions closed today (UTC)."),
            GaugeMetricFamily("kronos_bot_closed_trades", "Closed positions in the journal."),
            GaugeMetricFamily("kronos_bot_forecast_scored", "Scored forecasts in the last 30 days."),
            *(GaugeMetricFamily(f"kronos_bot_{suffix}", text) for suffix, _key, text in SKILL_GAUGES),
        ]
