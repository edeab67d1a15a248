"""The trial engine of `kronos-bot optimize`: one backtest per parameter set, without recomputing the gates.

Why a separate path: a study replays the same period hundreds of times with other thresholds. Everything
that does not depend on them -- the bar windows and their validation, the indicator values, sentiment,
and above all the Kronos forecasts -- is computed once per study by `prepare_trials` (with the very
`SignalSource` a backtest uses, so the forecasts are the backtest's, from the same cache). `run_trial`
then only re-derives the gate verdicts under the trial's thresholds (the real `kronos_gate` on the kept
forecast; the RSI bounds on the kept indicator values, see `technical_verdict`) and replays the account
through the backtest's own `replay_hours` (same engine, executor, simulated broker and exits), without
grading and without the report's extras. So a trial equals `run_backtest` with the same settings over
the same span, trade for trade (tests/test_trials.py).

What makes it fast (measured with cProfile on 6 months x 4 symbols; scripts/bench_optimize.py): no
per-hour pandas and no forecast parsing (done once); the engine asked only for symbols that can enter
(`_candidates`, `TrialReplay`), which skips most journal reads, and only those gates judged again
(`TrialJudge`); bars and prices remembered across trials (`MemoBars`); the simulated broker's cash,
positions and orders kept in memory (`SimStore.keep_in_memory`); one journal transaction per trial; stop
raises carried in memory between exit bars and no broker-side backstops (`TrialReplay.exits`: exact as
long as the monitor carries out every exit verdict, and a trial where it does not is replayed in full).
What is left is the live trader's own work per entry and exit (journal rows, orders, fills).

Settings that change the forecasts or the kept inputs (sampling, horizon, bars, sentiment, symbols, the
model) are refused with a ValueError: the study computes those once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kronos_bot.backtest import metrics
from kronos_bot.backtest.bar_exits import monitor_ticks
from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import Bar, BarStore
from kronos_bot.backtest.forecast_cache import ForecastBook
from kronos_bot.backtest.memo import BarsMemo
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.replay import Replay
from kronos_bot.backtest.rows import position_fees
from kronos_bot.backtest.runner import DEFAULT_BATCH_HOURS, BacktestRun, equal_weight, news_feed, replay_hours
from kronos_bot.backtest.signals import HourSignals, SignalSource
from kronos_bot.config import BackstopSettings, KronosGateSettings, Settings, TechnicalSettings
from kronos_bot.domain import Decision, GateResults, KronosResult, TechnicalResult, TechnicalVerdict
from kronos_bot.forecast_types import Forecaster, ForecasterUnavailable, SamplingParams, SeriesForecast, SeriesInput
from kronos_bot.gates.forecast_cache import sampling_params
from kronos_bot.gates.kronos import kronos_gate
from kronos_bot.gates.technical import technical_gate
from kronos_bot.logs import get_logger
from kronos_bot.market.news import NewsProvider
from kronos_bot.trader.records import PositionRecord
from kronos_bot.trader.stops import StopState

HOUR = timedelta(hours=1)
log = get_logger("kronos_bot.backtest.trials")
MODEL_KIND = "trials-model"  # cache kind: the model_info a study's forecasts were computed with
# The Kronos gate's settings that shape the forecasts (or which of its candles is read): fixed per study.
FORECAST_FIELDS = ("pred_len", "horizon", "samples", "temperature", "top_p", "top_k", "seed")
# Technical settings a trial may change without recomputing the indicators (they are compared only).
TECHNICAL_THRESHOLDS = frozenset({"rsi_min", "rsi_max"})
# Slack of the candidate filter (see `_candidates`): it may let an hour through, never hold one back.
SLACK = 1e-9


class MemoBars(BarStore):
    """The same bars, with `bar` and `mark` remembered: a study asks for the same few thousand bars and
    prices in every trial, and each lookup otherwise costs a binary search and four Decimal conversions.
    Both are pure functions of the (immutable) bars, so remembering them changes no answer."""

    def __init__(self, store: BarStore) -> None:
        self.symbols = list(store.symbols)
        self._bars = {s: store.bars(s) for s in self.symbols}
        self._bar_memo: dict[tuple[str, datetime], Bar | None] = {}
        self._mark_memo: dict[tuple[str, datetime], Decimal | None] = {}

    def bar(self, symbol: str, open_time: datetime) -> Bar | None:
        key = (symbol, open_time)
        try:
            return self._bar_memo[key]
        except KeyError:
            found = self._bar_memo[key] = super().bar(symbol, open_time)
            return found

    def mark(self, symbol: str, t: datetime) -> Decimal | None:
        key = (symbol, t)
        try:
            return self._mark_memo[key]
        except KeyError:
            found = self._mark_memo[key] = super().mark(symbol, t)
            return found


@dataclass(frozen=True)
class TrialResult:
    """What the study scores a trial by (fractions, not percent)."""

    total_return: float
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown: float
    trades: int  # closed positions
    win_rate: float | None
    fees_usd: float
    buy_and_hold_return: float | None  # equal-weight buy & hold of the symbols over the same span
    equity: list[tuple[datetime, float]]  # equity per hour boundary


@dataclass
class TrialData:
    """What stays the same between the trials of a study (see the module doc); built by `prepare_trials`.

    Picklable (bars, plain dataclasses, forecasts), so a worker process may receive it instead of
    rebuilding it from the cache.
    """

    settings: Settings
    store: BarStore
    period: Period
    hours: list[HourSignals]  # one per decision time of the period, ascending
    # per kept forecast (hour index, symbol): (predicted - last) / last at the horizon, as kronos_gate has it
    moves: dict[tuple[int, str], float]
    model_info: dict[str, Any] | None
    forecasts: dict[str, object]  # the ForecastBook's stats of the prepare
    # technical settings JSON -> (hour index, symbol) -> result, for indicator settings other than the study's
    technical_by_settings: dict[str, dict[tuple[int, str], TechnicalResult]]
    # (start, end, starting cash) -> equal-weight buy & hold return: the folds' spans recur in every trial
    buy_and_hold: dict[tuple[datetime, datetime, float], float | None] = field(default_factory=dict)

    def index_of(self, t: datetime) -> int:
        """Position of decision time `t` in `hours`."""
        offset = (t - self.period.start) // HOUR
        if t < self.period.start or t > self.period.end or t != self.period.start + offset * HOUR:
            raise ValueError(f"{t.isoformat()} is not an hour boundary of {self.period}")
        return int(offset)


class _CachedOnly:
    """A Forecaster for a warm cache without a model: it names the model the cached forecasts came from
    and never forecasts (`asked` counts the forecasts that were missing)."""

    def __init__(self, info: dict[str, object]) -> None:
        self.info = info
        self.asked = 0

    def model_info(self) -> dict[str, object]:
        return dict(self.info)

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        self.asked += len(series)
        raise ForecasterUnavailable("not in the forecast cache, and no model given")


def _model_namespace(settings: Settings) -> str:
    params = sampling_params(settings.gates.kronos, settings.forecaster.max_context)
    return json.dumps({"symbols": list(settings.symbols), **params.__dict__}, sort_keys=True)


def prepare_trials(
    settings: Settings,
    store: BarStore,
    period: Period,
    *,
    forecaster: Forecaster | None,
    cache: CacheStore | None,
    progress: Callable[[int, int, str], None] | None = None,
    news: NewsProvider | None = None,
    batch_hours: int = DEFAULT_BATCH_HOURS,
) -> TrialData:
    """Every gate input of `period` under `settings`, forecasts computed once (or read from `cache`).

    With a warm cache `forecaster` may be None: the cache remembers which model the forecasts came from
    (ValueError when it has no forecasts of these settings, or misses some of the period). Without a
    model and without a cache, Kronos is UNAVAILABLE at every hour, as in `run_backtest(forecaster=None)`.
    `progress(done, total, note)` is called after every chunk of hours.
    """
    missing = [s for s in settings.symbols if s not in store.symbols]
    if missing:
        raise ValueError(f"no bars loaded for {', '.join(missing)}")
    params = sampling_params(settings.gates.kronos, settings.forecaster.max_context)
    stand_in: _CachedOnly | None = None
    model: Forecaster | None = forecaster
    if model is None and cache is not None:
        recorded = cache.load(MODEL_KIND, _model_namespace(settings)).get("model_info")
        if recorded is None:
            raise ValueError("no forecasts of these sampling settings are in the cache: give the model")
        stand_in = _CachedOnly(json.loads(recorded))
        model = stand_in
    book = ForecastBook(model, cache, params) if model is not None else None
    source = SignalSource(settings, store, book, news_feed(news, settings), cache)
    times = list(period.boundaries())[:-1]
    size = max(1, batch_hours)
    hours: list[HourSignals] = []
    try:
        for lo in range(0, len(times), size):
            hours.extend(source.chunk(times[lo : lo + size]))
            if progress is not None:
                note = f"forecasts: {book.computed} computed, {book.hits} cached" if book is not None else ""
                progress(len(hours), len(times), note)
            if cache is not None and (lo // size + 1) % 25 == 0:
                cache.flush()
    finally:
        if cache is not None:
            cache.flush()
    if stand_in is not None and stand_in.asked:
        raise ValueError(f"{stand_in.asked} forecast(s) of this period are not in the cache: give the model")
    if cache is not None and book is not None and stand_in is None:
        cache.put(MODEL_KIND, _model_namespace(settings), "model_info", json.dumps(book.model_info, default=str))
        cache.flush()
    return TrialData(
        settings=settings,
        store=MemoBars(store),
        period=period,
        hours=hours,
        moves=_moves(hours, settings.gates.kronos.horizon),
        model_info=book.model_info if book is not None else None,
        forecasts=book.stats() if book is not None else {},
        technical_by_settings={},
    )


def _moves(hours: list[HourSignals], horizon: int) -> dict[tuple[int, str], float]:
    """The predicted move of every kept forecast that has a horizon candle and a usable last close."""
    out: dict[tuple[int, str], float] = {}
    for i, hour in enumerate(hours):
        for g in hour.gates:
            forecast, last = hour.forecasts.get(g.symbol), g.kronos.last_close
            if forecast is None or last is None or len(forecast.candles) < horizon:
                continue
            predicted = float(forecast.candles[horizon - 1].close)
            if math.isfinite(last) and last > 0 and math.isfinite(predicted):
                out[(i, g.symbol)] = (predicted - last) / last
    return out


def check_trial_settings(data: TrialData, settings: Settings) -> None:
    """ValueError when `settings` differ from the study's in what the prepared inputs depend on."""
    base = data.settings
    kronos, base_kronos = settings.gates.kronos, base.gates.kronos
    for name in FORECAST_FIELDS:
        if getattr(kronos, name) != getattr(base_kronos, name):
            raise ValueError(f"gates.kronos.{name} changes the forecasts: not a trial parameter")
    if settings.forecaster != base.forecaster:
        raise ValueError("forecaster changes the forecasts: not a trial parameter")
    if settings.bars != base.bars:
        raise ValueError("bars changes the forecasts: not a trial parameter")
    if list(settings.symbols) != list(base.symbols):
        raise ValueError("symbols changes the forecasts: not a trial parameter")
    if settings.gates.sentiment != base.gates.sentiment:
        raise ValueError("gates.sentiment changes the prepared sentiment: not a trial parameter")


def _changed_fields(a: TechnicalSettings, b: TechnicalSettings) -> set[str]:
    left, right = a.model_dump(), b.model_dump()
    return {k for k in left if left[k] != right[k]}


def technical_verdict(kept: TechnicalResult, settings: TechnicalSettings) -> TechnicalResult:
    """`kept` (computed with the same indicator settings) judged with other RSI bounds.

    Only the RSI check depends on rsi_min / rsi_max, and it compares the kept RSI value exactly as
    `technical_gate` does; the EMA and MACD checks keep their outcome. NO_DATA stays NO_DATA (it depends
    on the bar count and the periods only). tests/test_trials.py checks this against `technical_gate`.
    """
    if kept.verdict is TechnicalVerdict.NO_DATA or kept.checks.get("rsi") is None:
        return kept
    assert kept.rsi is not None
    passed = settings.rsi_min <= kept.rsi <= settings.rsi_max
    if passed == kept.checks["rsi"]:
        return kept
    checks = {**kept.checks, "rsi": passed}
    failed = any(v is False for v in checks.values())
    verdict = TechnicalVerdict.FAIL if failed else TechnicalVerdict.PASS
    return replace(
        kept, verdict=verdict, checks=checks, reason=f"trial: RSI bounds {settings.rsi_min:g}-{settings.rsi_max:g}"
    )


def _recomputed_technical(data: TrialData, settings: TechnicalSettings) -> dict[tuple[int, str], TechnicalResult]:
    """`technical_gate` itself on every valid window, for indicator settings other than the study's
    (slow: the validated bars are rebuilt; kept per settings for the next trial)."""
    key = settings.model_dump_json()
    known = data.technical_by_settings.get(key)
    if known is not None:
        return known
    bars_memo = BarsMemo(None, data.settings.bars)
    out: dict[tuple[int, str], TechnicalResult] = {}
    for i, hour in enumerate(data.hours):
        for g in hour.gates:
            frame = bars_memo.frame(data.store.window(g.symbol, hour.time, data.settings.bars))
            out[(i, g.symbol)] = technical_gate(frame, settings)
    data.technical_by_settings[key] = out
    return out


def _candidates(data: TrialData, settings: KronosGateSettings, lo: int, hi: int) -> dict[int, set[str]]:
    """Hour index in lo..hi-1 -> the symbols whose Kronos verdict can be an actionable UP under `settings`.

    Why: the engine enters only on an actionable UP with confidence >= min_confidence (`engine._signal`);
    any other symbol's decision is a SKIP, which changes nothing in the account and nothing for the
    symbols after it (only an ENTER counts against max_open_positions and buying power). So a trial
    decides only these symbols, and an hour without any runs just its exits and its equity. For
    `magnitude` the test is kronos_gate's own rule on the kept move (UP iff move > threshold; confidence
    min(|move| x 50, 1)), with a little slack so that rounding can only let a symbol through; its verdict
    is then the real `kronos_gate`'s. For `ensemble` every symbol is a candidate (no shortcut).
    """
    out: dict[int, set[str]] = {}
    if settings.method != "magnitude":
        for i in range(lo, hi):
            out[i] = {g.symbol for g in data.hours[i].gates}
        return out
    threshold = settings.threshold_percent / 100.0 - SLACK
    least = settings.min_confidence - SLACK
    for (i, symbol), move in data.moves.items():
        if lo <= i < hi and move > threshold and min(abs(move) * 50.0, 1.0) >= least:
            out.setdefault(i, set()).add(symbol)
    return out


class TrialJudge:
    """The gate verdicts of one trial's settings, on the study's kept inputs, by the real gate functions.

    Why a separate step: `trial_hours` lists each hour's candidate symbols (`_candidates`) with their
    kept gates, and only the ones the engine is then really asked about (`TrialReplay` leaves out held
    symbols and full hours) are judged again under the trial's thresholds -- most candidates never are.
    """

    def __init__(self, data: TrialData, settings: Settings) -> None:
        technical = settings.gates.technical
        self.technical = technical
        self.changed = _changed_fields(technical, data.settings.gates.technical)
        self.recomputed = _recomputed_technical(data, technical) if self.changed - TECHNICAL_THRESHOLDS else None
        self.kronos: KronosGateSettings = settings.gates.kronos
        self.same_kronos = self.kronos == data.settings.gates.kronos
        self.start = data.period.start

    def __call__(self, signals: HourSignals) -> HourSignals:
        """`signals` (kept gates) with every gate judged under the trial's settings."""
        if not signals.gates or (self.same_kronos and not self.changed):
            return signals
        i = (signals.time - self.start) // HOUR
        gates = []
        for g in signals.gates:
            if self.recomputed is not None:
                tech = self.recomputed[(i, g.symbol)]
            elif self.changed:
                tech = technical_verdict(g.technical, self.technical)
            else:
                tech = g.technical
            kr = g.kronos if self.same_kronos else _kronos(g.kronos, signals.forecasts.get(g.symbol), self.kronos)
            gates.append(GateResults(g.symbol, tech, g.sentiment, kr))
        return replace(signals, gates=gates)


def trial_hours(data: TrialData, settings: Settings, lo: int, hi: int) -> list[HourSignals]:
    """The kept hours lo..hi-1, each with the kept gates of its candidate symbols only (see `_candidates`),
    not yet judged under `settings` (`TrialJudge`)."""
    candidates = _candidates(data, settings.gates.kronos, lo, hi)
    out = []
    for i in range(lo, hi):
        hour = data.hours[i]
        wanted = candidates.get(i)
        gates = [g for g in hour.gates if g.symbol in wanted] if wanted else []
        out.append(
            HourSignals(time=hour.time, gates=gates, problems={}, last_close=hour.last_close, forecasts=hour.forecasts)
        )
    return out


class ExitNotCarriedOut(Exception):
    """The monitor did not sell on a bar whose verdict is an exit: from there on the broker-side backstop
    could matter, so the trial is replayed by the plain `Replay` (see `TrialReplay`)."""

    def __init__(self, symbol: str, bar_open: datetime) -> None:
        super().__init__(f"{symbol}: exit verdict of the bar at {bar_open.isoformat()} not carried out")


class TrialReplay(Replay):
    """The backtest's `Replay`, asking the engine only when an entry is possible at all.

    A symbol with an open position, or any symbol while max_open_positions are open, is a SKIP whatever
    its gates say (`engine._risk`), and a SKIP changes nothing: such symbols are left out, and an hour
    left with none skips `risk_state` (five journal reads) and the engine. The open positions are the
    journal's own (one read); the engine's open set also counts pending entries, so this never leaves out
    a symbol the engine would let enter. And while the account is known to be flat (no position at the
    last read, no entry since: only entries open positions in a replay) the exits have nothing to do.
    The gates left are judged under the trial's settings (`judge`) only then.

    Its settings have the broker-side backstops off (`run_trial`): in a replay a backstop can only
    change the account when the monitor did not carry out an exit verdict (`Replay._backstop`), and such
    a bar ends this replay with `ExitNotCarriedOut`, so that the trial is replayed by the plain `Replay`.
    """

    def __init__(
        self, settings: Settings, store: BarStore, start: datetime, judge: Callable[[HourSignals], HourSignals]
    ) -> None:
        super().__init__(settings, store, start)
        self.judge = judge
        self._flat = True  # a fresh journal has no position
        self._stops: dict[int, StopState] = {}  # position id -> stop state not yet handed to the monitor

    def exits(self, bar_open: datetime) -> list[PositionRecord]:
        """`Replay.exits` with the stop raises of bars that exit nothing kept here instead of journaled.

        Why: most held bars raise the HWM (a tick the monitor turns into a journal write, a re-read and a
        backstop move), and only an exit bar's verdict changes the account. The raise is the same pure
        rule the monitor applies to that tick (`update_stop` on the bar's high is `_raise_hwm`, exactly
        `update_stop_bar`'s state, and it cannot exit), so the state is carried in memory; before an exit
        bar it is written to the journal and the bar's ticks go through the monitor as in a backtest. The
        price source follows every tick as there (a symbol without a bar at the next boundary keeps it).
        A verdict the monitor does not carry out raises `ExitNotCarriedOut` (see the class doc).
        """
        if self._flat:
            self._marked = None  # as Replay.exits leaves it
            return []
        closed: list[PositionRecord] = []
        self._marked = None
        exits = self.settings.exits
        for position in self.open_positions():
            bar = self.store.bar(position.symbol, bar_open)
            if bar is None:
                continue
            journaled = position.stop_state()
            state = self._stops.get(position.id, journaled)
            verdict, ticks = monitor_ticks(state, bar, exits)
            if verdict.reason is None:
                for tick in ticks:
                    self.prices.set(position.symbol, tick.price)
                self._stops[position.id] = verdict.state
                continue
            if state != journaled:
                self.journal.update_stop(position.id, state)
                position = self.journal.get_position(position.id)
            done = self.through_ticks(position, ticks)
            if done is None:
                raise ExitNotCarriedOut(position.symbol, bar_open)
            self._stops.pop(position.id, None)
            closed.append(done)
        return closed

    def decide_and_enter(self, signals: HourSignals) -> list[Decision]:
        if not signals.gates:
            return super().decide_and_enter(signals)
        open_symbols = {p.symbol for p in self.open_positions()}
        self._flat = not open_symbols
        if len(open_symbols) >= self.settings.risk.max_open_positions:
            return []
        gates = [g for g in signals.gates if g.symbol not in open_symbols]
        if len(gates) < len(signals.gates):
            signals = replace(signals, gates=gates)
        signals = self.judge(signals)
        entered = len(self.entries)
        decisions = super().decide_and_enter(signals)
        if len(self.entries) > entered:
            self._flat = False
        return decisions


def _kronos(kept: KronosResult, forecast: SeriesForecast | None, settings: KronosGateSettings) -> KronosResult:
    if forecast is None:
        return kronos_gate(None, kept.last_close, settings, unavailable_reason=kept.reason)
    return kronos_gate(forecast, kept.last_close, settings)


def run_trial(data: TrialData, settings: Settings, start: datetime, end: datetime) -> TrialResult:
    """Replay [start, end) with `settings` from a flat account (see the module doc)."""
    check_trial_settings(data, settings)
    if not start < end:
        raise ValueError(f"empty span {start.isoformat()} .. {end.isoformat()}")
    lo, hi = data.index_of(start), data.index_of(end)
    period = Period(start, end)
    run = BacktestRun(settings=settings, period=period, model_info=data.model_info)
    hours, judge = trial_hours(data, settings, lo, hi), TrialJudge(data, settings)
    # No broker-side backstops in a trial (see `TrialReplay`): the replay's settings leave them off.
    quick = settings.model_copy(
        update={"exits": settings.exits.model_copy(update={"backstop": BackstopSettings(enabled=False)})}
    )
    replay = TrialReplay(quick, data.store, start, judge)
    try:
        # One transaction for the whole trial: the journal is in memory and this trial's alone, so the
        # hourly ones of `replay_hours` (a BEGIN and a COMMIT each) would buy nothing.
        with replay.journal.transaction():
            replay_hours(replay, run, hours, data.store, period, extras=False)
    except ExitNotCarriedOut as exc:
        log.info("trial.full_replay", reason=str(exc))
        run = BacktestRun(settings=settings, period=period, model_info=data.model_info)
        plain = Replay(settings, data.store, start)
        try:
            replay_hours(plain, run, [judge(h) for h in hours], data.store, period, extras=False)
        finally:
            plain.close()
    finally:
        replay.close()
    return _result(run, _buy_and_hold(data, settings, period))


def _buy_and_hold(data: TrialData, settings: Settings, period: Period) -> float | None:
    """The backtest's equal-weight benchmark return over `period` (`runner.equal_weight`), once per span."""
    key = (period.start, period.end, settings.broker.sim.starting_cash)
    if key not in data.buy_and_hold:
        store, symbols = data.store, settings.symbols
        curve = equal_weight(
            store.mark, settings, list(period.boundaries()), {s: store.mark(s, period.start) for s in symbols}
        )
        data.buy_and_hold[key] = metrics.period_return([float(v) for v in curve])
    return data.buy_and_hold[key]


def _result(run: BacktestRun, buy_and_hold: float | None) -> TrialResult:
    equity = [float(p.equity) for p in run.equity]
    returns = metrics.simple_returns(equity)
    closed = [p for p in run.positions if not p.is_open]
    drawdown = metrics.max_drawdown(equity)
    total = metrics.period_return(equity) or 0.0
    fees = sum((position_fees(p) for p in run.positions), Decimal(0))
    return TrialResult(
        total_return=total,
        sharpe=metrics.sharpe(returns),
        sortino=sortino(returns),
        calmar=calmar(total, drawdown, len(returns)),
        max_drawdown=drawdown,
        trades=len(closed),
        win_rate=metrics.win_rate([float(p.pnl) for p in closed if p.pnl is not None]),
        fees_usd=float(fees),
        buy_and_hold_return=buy_and_hold,
        equity=[(p.time, float(p.equity)) for p in run.equity],
    )


def sortino(returns: Sequence[float], periods_per_year: int = metrics.HOURS_PER_YEAR) -> float | None:
    """Mean hourly return / downside deviation (root mean square of the negative returns, target 0, over
    all returns), annualized like `metrics.sharpe`; None with fewer than two returns or no losing hour."""
    n = len(returns)
    if n < 2:
        return None
    downside = sum(min(r, 0.0) ** 2 for r in returns) / n
    if downside <= 0:
        return None
    return sum(returns) / n / downside**0.5 * periods_per_year**0.5


def calmar(total_return: float, max_drawdown: float, hours: int) -> float | None:
    """Annualized (compounded) return / max drawdown; None without a drawdown or an hour."""
    if max_drawdown <= 0 or hours <= 0 or total_return <= -1:
        return None
    annual = (1.0 + total_return) ** (metrics.HOURS_PER_YEAR / hours) - 1.0
    return annual / max_drawdown
