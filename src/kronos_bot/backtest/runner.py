"""The hourly backtest loop: stage A (gates) and stage B (account), chunk by chunk, with progress.

Order at each bar boundary t of the period (start <= t <= end):
    exits of the bar [t-1h, t)  ->  equity at t  ->  decisions at t (bars closed <= t), entries at the open of t
No decision is made at `end` (its orders would fill after the period). Stage A runs a chunk of
`batch_hours` boundaries ahead of stage B only to batch forecasts; it never reads the account.

Why not drive `cycle.EntryCycle.run` itself with a replayed market and clock: it works, but costs ~50 ms
per replayed hour on this class of machine (pandas in `technical_gate` and `validate_bars`, reconcile and
journal writes per cycle), i.e. minutes for 6 months even with every forecast cached. So the replay calls
the cycle's pieces -- the same functions, in the same order -- and memoizes the pure ones (`memo`).
The one thing it words itself, exactly as the cycle does, is the `data_invalid` SKIP (`replay`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import BarStore
from kronos_bot.backtest.forecast_cache import ForecastBook
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.replay import EquityPoint, Replay
from kronos_bot.backtest.rows import decision_row
from kronos_bot.backtest.signals import HourSignals, SignalSource
from kronos_bot.config import Settings
from kronos_bot.forecast_types import Forecaster
from kronos_bot.gates.forecast_cache import model_fingerprint, sampling_params
from kronos_bot.logs import get_logger
from kronos_bot.market.news import NewsFeed, NewsProvider
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.records import PositionRecord
from kronos_bot.trader.skill_keeper import gate_document, resolve_shadow_rows, score_pending, skill_document

log = get_logger("kronos_bot.backtest")

HOUR = timedelta(hours=1)
DEFAULT_BATCH_HOURS = 4
FLUSH_EVERY_CHUNKS = 25
NO_ARCHIVE = "no news archive given (--news): sentiment is NO_DATA in backtests"


@dataclass
class BacktestRun:
    """Everything a report needs about one run."""

    settings: Settings
    period: Period
    equity: list[EquityPoint] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    positions: list[PositionRecord] = field(default_factory=list)
    start_marks: dict[str, Decimal | None] = field(default_factory=dict)
    end_marks: dict[str, Decimal | None] = field(default_factory=dict)
    benchmark: list[Decimal] = field(default_factory=list)  # equal-weight buy & hold value per boundary
    # each symbol's price at each boundary (store.mark; None before its first bar): the report's price panels
    marks: dict[str, list[Decimal | None]] = field(default_factory=dict)
    entry_outcomes: dict[str, int] = field(default_factory=dict)
    forecasts: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, int] = field(default_factory=dict)
    sentiment: str = NO_ARCHIVE
    model_info: dict[str, Any] | None = None
    seconds: float = 0.0
    exit_mismatches: int = 0
    skill: dict[str, Any] = field(default_factory=dict)  # skill.json: the shape of `kronos-bot skill --json`
    gates: dict[str, Any] = field(default_factory=dict)  # shadow outcomes per blocking reason
    ablation: list[dict[str, Any]] = field(default_factory=list)


def fingerprint_of(model_info: dict[str, Any] | None) -> str:
    """The model fingerprint the live cycle journals forecasts under ("none" without a model)."""
    return model_fingerprint(model_info) if model_info else "none"


def _chunks(items: list[datetime], size: int) -> list[list[datetime]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def news_feed(news: NewsProvider | None, settings: Settings) -> NewsFeed:
    """The sentiment gate's feed of a replay: the archive given, else none (NO_DATA, said once why)."""
    if news is not None:
        return NewsFeed(news, settings.gates.sentiment)
    return NewsFeed(None, settings.gates.sentiment, NO_ARCHIVE)


def run_backtest(
    settings: Settings,
    store: BarStore,
    period: Period,
    *,
    forecaster: Forecaster | None,
    cache: CacheStore | None = None,
    news: NewsProvider | None = None,
    news_note: str | None = None,
    batch_hours: int = DEFAULT_BATCH_HOURS,
    progress: Callable[[int, int, str], None] | None = None,
    journal_out: str | Path | None = None,
    ablate: bool = False,
) -> BacktestRun:
    """Replay `period` hour by hour; `progress(done, total, note)` is called after every boundary.

    The run grades itself as the live trader does (forecasts scored at their horizon, every decision's
    shadow entry; `run.skill`, `run.gates`); `journal_out` keeps its journal there, so
    `kronos-bot skill --journal` reads the same numbers. `ablate` replays the period again for each gate
    variant of `ablation.VARIANTS` from the same signals (no forecast is computed twice).
    """
    started = time.perf_counter()
    missing = [s for s in settings.symbols if s not in store.symbols]
    if missing:
        raise ValueError(f"no bars loaded for {', '.join(missing)}")
    params = sampling_params(settings.gates.kronos, settings.forecaster.max_context)
    book = ForecastBook(forecaster, cache, params) if forecaster is not None else None
    source = SignalSource(settings, store, book, news_feed(news, settings), cache)
    run = BacktestRun(settings=settings, period=period, sentiment=news_note or NO_ARCHIVE)
    run.model_info = book.model_info if book is not None else None
    boundaries = list(period.boundaries())
    kept: list[HourSignals] | None = [] if ablate else None

    def hours() -> Iterator[HourSignals]:
        for n, chunk in enumerate(_chunks(boundaries[:-1], max(1, batch_hours)), start=1):
            for signals in source.chunk(chunk):
                if kept is not None:
                    kept.append(signals)
                yield signals
            if cache is not None and n % FLUSH_EVERY_CHUNKS == 0:
                cache.flush()

    def note(done: int) -> None:
        if progress is not None:
            text = f"forecasts: {book.computed} computed, {book.hits} cached" if book is not None else ""
            progress(done, len(boundaries), text)

    replay = Replay(settings, store, period.start)
    try:
        replay_hours(replay, run, hours(), store, period, note=note, grade=True)
        if journal_out is not None:
            replay.journal.save_copy(journal_out)
    finally:
        if cache is not None:
            cache.flush()
        replay.close()
    run.forecasts = book.stats() if book is not None else {}
    run.memo = {
        "bars_hits": source.bars_memo.memo.hits,
        "bars_misses": source.bars_memo.memo.misses,
        "technical_hits": source.technical_memo.memo.hits,
        "technical_misses": source.technical_memo.memo.misses,
    }
    if kept is not None:
        from kronos_bot.backtest.ablation import run_ablation

        run.ablation = run_ablation(run, store, kept)
    run.seconds = time.perf_counter() - started
    return run


def replay_hours(
    replay: Replay,
    run: BacktestRun,
    hours: Iterable[HourSignals],
    store: BarStore,
    period: Period,
    *,
    note: Callable[[int], None] | None = None,
    grade: bool = False,
    transform: Callable[[HourSignals], HourSignals] | None = None,
    extras: bool = True,
) -> None:
    """Stage B over the period: exits, equity, decisions and entries at each boundary (see module doc);
    fills `run`. `grade` journals decisions, forecasts and shadows and scores them at the end, as the
    live trader does; `transform` changes each hour's gates first (the ablation's variants). Without
    `extras` the report's decision rows, price marks and benchmark are left out (the optimizer's trials
    need none of them)."""
    settings = run.settings
    horizon = settings.gates.kronos.horizon
    model = fingerprint_of(run.model_info)
    journal = replay.journal
    done = 0

    def tick(t: datetime) -> None:
        # Equity at t after the exits of the bar that just closed, before the entries at t.
        nonlocal done
        replay.set_marks(t)
        run.equity.append(replay.snapshot(t))
        done += 1
        if note is not None:
            note(done)

    for signals in hours:
        t = signals.time
        if transform is not None:
            signals = transform(signals)
        # One journal transaction per replayed hour: the parts' own (nested) transactions then cost
        # nothing, and the in-memory journal needs no durability between hours.
        with journal.transaction():
            if t > period.start:
                replay.exits(t - HOUR)
            tick(t)
            gates = {g.symbol: g for g in signals.gates}
            for decision in replay.decide_and_enter(signals):
                if extras:
                    run.decisions.append(decision_row(t, decision, gates.get(decision.symbol)))
                if grade:
                    # Without the gate numbers (decisions.csv has them): only what attribution needs.
                    journal.record_decision(decision)
                    journal.ensure_shadow(decision.symbol, t, now=t)
            if grade:
                for symbol, facts in signals.facts.items():
                    journal.record_skill_forecast(
                        symbol=symbol,
                        origin=t,
                        horizon=horizon,
                        horizon_bar=t + (horizon - 1) * HOUR,
                        model=model,
                        seed=settings.gates.kronos.seed,
                        samples=len(facts.horizon_closes),
                        facts=facts.to_json(),
                        now=t,
                    )
    replay.exits(period.end - HOUR)
    tick(period.end)
    run.positions = replay.positions()
    run.entry_outcomes = dict(Counter(e.status for e in replay.entries))
    run.exit_mismatches = replay.exit_mismatches
    if not extras:
        return
    run.start_marks = {s: store.mark(s, period.start) for s in settings.symbols}
    run.end_marks = {s: store.mark(s, period.end) for s in settings.symbols}
    boundaries = list(period.boundaries())
    run.marks = {s: [store.mark(s, t) for t in boundaries] for s in settings.symbols}
    run.benchmark = equal_weight(store.mark, settings, boundaries, run.start_marks)
    if grade:
        grade_run(run, journal, store)


def grade_run(run: BacktestRun, journal: Journal, store: BarStore) -> None:
    """Score every journaled forecast and finish every shadow from the store's bars (all of history is
    known: what cannot be scored now never will be), then keep the documents `skill` would print."""
    settings = run.settings
    # Late enough that every journaled horizon bar counts as closed: the last ones lie past the data.
    end = max(store.span()[1], run.period.end) + (settings.gates.kronos.horizon + 1) * HOUR

    def actual_of(symbol: str, open_time: datetime) -> float | None:
        bar = store.bar(symbol, open_time)
        return float(bar.close) if bar is not None else None

    # Each shadow walks the hours after its entry, so neighbouring shadows read the same bars again:
    # one Decimal conversion per bar, not one per read.
    memo: dict[tuple[str, datetime], Any] = {}

    def bar_lookup(symbol: str) -> Callable[[datetime], Any]:
        def lookup(open_time: datetime) -> Any:
            key = (symbol, open_time)
            if key not in memo:
                memo[key] = store.bar(symbol, open_time)
            return memo[key]

        return lookup

    counts = score_pending(
        journal,
        actual_of,
        end,
        give_up=lambda _bar: True,
        log_each=False,
        unscorable_reason="its horizon bar is past the end of the data",
    )
    log.info("backtest.graded", **counts)
    resolve_shadow_rows(journal, bar_lookup, settings, end, give_up=lambda _s, _e: True)
    run.skill = skill_document(journal)
    run.gates = gate_document(journal)


def equal_weight(
    mark: Callable[[str, datetime], Decimal | None],
    settings: Settings,
    boundaries: list[datetime],
    start_marks: dict[str, Decimal | None],
) -> list[Decimal]:
    """Starting cash split equally over the symbols at the first boundary, held to the end (no fees);
    `mark(symbol, t)` is the price at t (`BarStore.mark`)."""
    cash = Decimal(str(settings.broker.sim.starting_cash))
    held = [s for s, m in start_marks.items() if m]
    if not held:
        return [cash for _ in boundaries]
    share = cash / len(held)
    out = []
    last: dict[str, Decimal] = {s: start_marks[s] for s in held}  # type: ignore[misc]
    for t in boundaries:
        value = Decimal(0)
        for s in held:
            price = mark(s, t) or last[s]
            last[s] = price
            value += share * price / start_marks[s]  # type: ignore[operator]
        out.append(value)
    return out
