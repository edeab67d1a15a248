"""The trader grades itself: every forecast it used is scored when its horizon bar has closed, every
decision gets its shadow outcome, and the skill guard watches the scores. I/O at the edge of `skill`.

Per cycle, with the bars the cycle fetched anyway (no extra request):
  * `record`: the forecast behind each symbol's Kronos verdict, with what scoring needs (journal table
    `skill_forecasts`; the four cycles of an hour share one forecast, recorded once);
  * `score_pending`: forecasts whose horizon bar has closed are scored from that bar's close (`forecast.scored`
    per forecast); one whose bar the trader can no longer see (it was down, data failed) is marked
    unscorable with the reason (`forecast.unscorable`) and counted, never dropped;
  * `note_decisions` / `resolve_shadows`: each decision's shadow entry at the next bar open, followed
    through later cycles' bars until the exits close it;
  * `refresh_guard`: after new scores, the last 30 days' Brier skill against no-change; when it is below
    zero with 95 % confidence (and n >= gates.kronos.skill_guard_min_n) the guard flips on (logged once,
    `skill.guard`), and off again when the skill recovers; `skill.summary` once a UTC day.
A failure here is logged and never stops a cycle: grading must not cost a trade or an exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from kronos_bot.config import Settings
from kronos_bot.domain import Decision
from kronos_bot.forecast_types import SeriesForecast
from kronos_bot.logs import get_logger
from kronos_bot.skill.scores import ForecastFacts, Scores, facts_from_paths, score_many
from kronos_bot.skill.shadow import Bar, BarLike, attribution, shadow_entry
from kronos_bot.skill.summary import ScoredForecast, no_skill, overall_line, skill_report, summarize
from kronos_bot.trader.journal import Journal

HOUR = timedelta(hours=1)
GUARD_WINDOW = timedelta(days=30)

log = get_logger("kronos_bot.skill")


def scored_rows(rows: Iterable[Mapping[str, Any]]) -> list[ScoredForecast]:
    """Journal rows of scored forecasts as the summary's input."""
    return [ScoredForecast(r["symbol"], r["origin"], Scores.from_json(r["scores"])) for r in rows if r["scores"]]


def skill_document(journal: Journal, since: datetime | None = None, symbol: str | None = None) -> dict[str, Any]:
    """`kronos-bot skill --json` of a journal, also what a backtest writes as skill.json."""
    rows = scored_rows(journal.skill_forecasts(since=since, symbol=symbol, status="scored"))
    report = skill_report(rows)
    report["counts"] = journal.skill_counts()
    return report


def gate_document(journal: Journal, since: datetime | None = None) -> dict[str, Any]:
    """`kronos-bot skill --gates --json`: what the decisions' shadow entries did, per blocking reason."""
    return attribution(journal.decisions_with_shadows(since=since))


def entry_bar_of(decided_at: datetime) -> datetime:
    """The bar a decision's entry would fill at: the one opening at the hour of the decision."""
    return decided_at.replace(minute=0, second=0, microsecond=0)


def record_forecast(
    journal: Journal,
    symbol: str,
    forecast: SeriesForecast,
    bars: pd.DataFrame,
    horizon: int,
    model: str,
    now: datetime,
) -> bool:
    """Journal one forecast for scoring (see the module doc); False when it cannot be scored at all."""
    index = horizon - 1
    if len(forecast.candles) <= index or not forecast.path_closes:
        return False
    last_open = bars.index[-1].to_pydatetime()
    facts = facts_from_paths(
        last_close=float(bars["close"].iloc[-1]),
        predicted=float(forecast.candles[index].close),
        horizon_closes=[path[index] for path in forecast.path_closes if len(path) > index],
        context_closes=bars["close"].astype(float).tolist(),
        horizon=horizon,
    )
    seed = forecast.extra.get("seed")
    return journal.record_skill_forecast(
        symbol=symbol,
        origin=last_open + HOUR,
        horizon=horizon,
        horizon_bar=last_open + horizon * HOUR,
        model=model,
        seed=int(seed) if isinstance(seed, int) else None,
        samples=len(forecast.path_closes),
        facts=facts.to_json(),
        now=now,
    )


def score_pending(
    journal: Journal,
    actual_of: Callable[[str, datetime], float | None],
    now: datetime,
    give_up: Callable[[datetime], bool],
    *,
    log_each: bool = True,
    unscorable_reason: str = "its horizon bar is no longer among the fetched bars (the trader was down or data failed)",
) -> dict[str, int]:
    """Score every pending forecast whose horizon bar has closed by `now` and whose close `actual_of`
    knows; one it never will (`give_up(horizon_bar)`) is marked unscorable. The live trader and the
    backtest both score through here; returns counts by outcome. A backtest grades thousands at once
    and says so in one line (`log_each=False`); the trader logs each forecast as it is scored."""
    counts = {"scored": 0, "unscorable": 0}
    due: list[tuple[dict[str, Any], float]] = []
    for row in journal.pending_skill_forecasts(now):
        actual = actual_of(row["symbol"], row["horizon_bar"])
        if actual is not None:
            due.append((row, actual))
        elif give_up(row["horizon_bar"]):
            journal.finish_skill_forecast(row["id"], scores=None, reason=unscorable_reason, now=now)
            counts["unscorable"] += 1
            if log_each:
                log.warning(
                    "forecast.unscorable",
                    symbol=row["symbol"],
                    origin=row["origin"].isoformat(),
                    reason=unscorable_reason,
                )
    results = score_many([ForecastFacts.from_json(r["facts"]) for r, _ in due], [a for _, a in due])
    with journal.transaction():
        for (row, actual), scores in zip(due, results, strict=True):
            journal.finish_skill_forecast(row["id"], scores=scores.to_json(), now=now)
            counts["scored"] += 1
            if not log_each:
                continue
            log.info(
                "forecast.scored",
                symbol=row["symbol"],
                origin=row["origin"].isoformat(),
                horizon=row["horizon"],
                actual=actual,
                hit=scores.hit,
                brier=round(scores.brier, 4),
                crps_pct=round(scores.crps, 4),
                pit=round(scores.pit, 3),
                covered=scores.covered,
                abs_error_pct=round(scores.abs_error_pct, 4),
                baseline_brier=round(scores.baseline_brier, 4),
                baseline_crps_pct=round(scores.baseline_crps, 4),
                drift_brier=round(scores.drift_brier, 4),
                drift_crps_pct=round(scores.drift_crps, 4),
            )
    return counts


def bars_lookup(bars: Mapping[str, pd.DataFrame]) -> Callable[[str, datetime], float | None]:
    """`actual_of` over a cycle's bars: the close of the bar opening at that time, if fetched."""

    def actual_of(symbol: str, open_time: datetime) -> float | None:
        df = bars.get(symbol)
        stamp = pd.Timestamp(open_time)
        if df is None or not len(df) or stamp not in df.index:
            return None
        value: Any = df.at[stamp, "close"]
        return float(value)

    return actual_of


def resolve_shadow_rows(
    journal: Journal,
    bar_lookup: Callable[[str], Callable[[datetime], BarLike | None] | None],
    settings: Settings,
    now: datetime,
    give_up: Callable[[str, datetime], bool],
) -> int:
    """Finish the pending shadow entries whose outcome the bars now show (`bar_lookup(symbol)`: that
    symbol's `bar_at(open_time)`, None when no bars of it are known); one that never will be known
    (`give_up`) is finished as `unresolved`. The live trader and the backtest both resolve
    through here. Returns how many were finished with an outcome."""
    max_hours = min(settings.skill.shadow_max_hours, settings.bars.count - 2)
    fee = Decimal(str(settings.broker.sim.fee_percent)) / 100
    slippage = Decimal(str(settings.broker.sim.slippage_bps)) / 10_000
    done = 0
    for row in journal.pending_shadows():
        symbol, entry = row["symbol"], row["entry_bar"]
        bar_at = bar_lookup(symbol)
        shadow = (
            shadow_entry(entry, bar_at, settings.exits, fee_rate=fee, slippage=slippage, max_hours=max_hours)
            if bar_at is not None
            else None
        )
        if shadow is not None and shadow.done:
            journal.finish_shadow(
                row["id"],
                entry_price=shadow.entry_price,
                exit_price=shadow.exit_price,
                exit_time=shadow.exit_time,
                exit_reason=shadow.exit_reason or "",
                return_pct=shadow.return_pct,
                now=now,
            )
            done += 1
        elif give_up(symbol, entry):
            journal.finish_shadow(
                row["id"],
                entry_price=None,
                exit_price=None,
                exit_time=None,
                exit_reason="unresolved",
                return_pct=None,
                now=now,
            )
    return done


def resolve_shadows(journal: Journal, bars: Mapping[str, pd.DataFrame], settings: Settings, now: datetime) -> int:
    """`resolve_shadow_rows` over a cycle's bars; an entry bar older than the window is given up."""

    lookups: dict[str, Callable[[datetime], BarLike | None]] = {}

    def bar_lookup(symbol: str) -> Callable[[datetime], BarLike | None] | None:
        df = bars.get(symbol)
        if df is None or not len(df):
            return None
        if symbol not in lookups:
            by_time = {b.open_time: b for b in _bars(df)}
            lookups[symbol] = by_time.get
        return lookups[symbol]

    def give_up(symbol: str, entry: datetime) -> bool:
        df = bars.get(symbol)
        return df is not None and len(df) > 0 and pd.Timestamp(entry) < df.index[0]

    return resolve_shadow_rows(journal, bar_lookup, settings, now, give_up)


def _bars(df: pd.DataFrame) -> list[Bar]:
    return [
        Bar(ts.to_pydatetime(), Decimal(str(o)), Decimal(str(h)), Decimal(str(lo)), Decimal(str(c)))
        for ts, o, h, lo, c in zip(df.index, df["open"], df["high"], df["low"], df["close"], strict=True)
    ]


class SkillKeeper:
    """The trader's grading between cycles: what it recorded, and whether the guard is on."""

    def __init__(self, journal: Journal, settings: Settings) -> None:
        self.journal = journal
        self.settings = settings
        self.guard_on = False
        self.guard_summary: dict[str, Any] | None = None
        self._summary_day: object = None
        self._refreshed = False

    def after_gates(
        self,
        bars: Mapping[str, pd.DataFrame],
        forecasts: Mapping[str, SeriesForecast],
        model: str | None,
        now: datetime,
    ) -> None:
        """Record this cycle's forecasts, score the due ones, follow shadows, refresh the guard."""
        try:
            horizon = self.settings.gates.kronos.horizon
            for symbol, forecast in forecasts.items():
                if symbol in bars and model:
                    record_forecast(self.journal, symbol, forecast, bars[symbol], horizon, model, now)
            lookback = self.settings.bars.count - 1
            counts = score_pending(
                self.journal, bars_lookup(bars), now, give_up=lambda bar: now - bar > lookback * HOUR
            )
            resolve_shadows(self.journal, bars, self.settings, now)
            if counts["scored"] or not self._refreshed:
                self.refresh_guard(now)
            self.daily_summary(now)
        except Exception as exc:  # grading never costs a cycle
            log.exception("skill.error", error=f"{type(exc).__name__}: {exc}")

    def note_decisions(self, decisions: Iterable[Decision], now: datetime) -> None:
        try:
            for decision in decisions:
                self.journal.ensure_shadow(decision.symbol, entry_bar_of(decision.decided_at or now), now)
        except Exception as exc:
            log.exception("skill.error", error=f"{type(exc).__name__}: {exc}")

    def refresh_guard(self, now: datetime) -> bool:
        """Recompute the guard from the last 30 days' scores; logs `skill.guard` when it flips."""
        self._refreshed = True
        kronos = self.settings.gates.kronos
        rows = scored_rows(self.journal.skill_forecasts(since=now - GUARD_WINDOW, status="scored"))
        summary = summarize(rows)
        self.guard_summary = summary
        flagged = kronos.skill_guard != "off" and no_skill(summary, kronos.skill_guard_min_n)
        if flagged != self.guard_on:
            self.guard_on = flagged
            fields = {
                "mode": kronos.skill_guard,
                "n": summary["n"],
                "brier": summary["brier"],
                "brier_baseline": summary["brier_baseline"],
                "brier_skill": summary["brier_skill"],
                "brier_skill_ci": summary["brier_skill_ci"],
                "window_days": GUARD_WINDOW.days,
            }
            if flagged:
                effect = (
                    "Kronos signals are not actionable (kronos_no_skill)"
                    if kronos.skill_guard == "block"
                    else "decisions carry the kronos_no_skill note; set gates.kronos.skill_guard: block to stop"
                )
                log.warning("skill.guard", state="no_skill", effect=effect, **fields)
            else:
                log.info("skill.guard", state="skill_ok", **fields)
        return self.guard_on

    @property
    def blocking(self) -> bool:
        return self.guard_on and self.settings.gates.kronos.skill_guard == "block"

    def daily_summary(self, now: datetime) -> None:
        """`skill.summary` once a UTC day (the first cycle after midnight, and the first after a start)."""
        day = now.date()
        if day == self._summary_day:
            return
        self._summary_day = day
        rows = scored_rows(self.journal.skill_forecasts(status="scored"))
        counts = self.journal.skill_counts()
        week = summarize([r for r in rows if r.origin > now - timedelta(days=7)])
        log.info(
            "skill.summary",
            overall=overall_line(summarize(rows)),
            last_7_days=overall_line(week),
            scored=counts.get("scored", 0),
            pending=counts.get("pending", 0),
            unscorable=counts.get("unscorable", 0),
            guard="no_skill" if self.guard_on else "ok",
        )
