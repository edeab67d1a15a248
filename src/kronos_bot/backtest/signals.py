"""Stage A of a backtest: what the three gates say at each replayed bar close.

For every hour `t` and symbol, exactly what the live entry cycle computes (`cycle.EntryCycle._run`):
the closed bars of the live fetch window, `validate_bars` at now = `t`, `technical_gate`,
`sentiment_gates` through a `NewsFeed`, and the Kronos gate on a forecast of the validated window.
Nothing here depends on the account (positions, cash), which is why it can run ahead of the account
simulation in chunks of hours: one forecaster call covers all symbols of several hours (cheaper per
series than one call per hour), while each forecast still sees only its own window, closed at its own `t`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import pandas as pd

from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import BarStore, RawWindow
from kronos_bot.backtest.forecast_cache import ForecastBook, ForecastJob, forecast_key
from kronos_bot.backtest.memo import BarsMemo, CheckedWindow, TechnicalMemo
from kronos_bot.config import Settings
from kronos_bot.domain import GateResults, KronosResult, TechnicalResult
from kronos_bot.forecast_types import SeriesForecast
from kronos_bot.gates.kronos import kronos_gate, unavailable
from kronos_bot.gates.sentiment import sentiment_gates
from kronos_bot.market.news import NewsFeed
from kronos_bot.skill.scores import ForecastFacts, facts_from_paths


@dataclass(frozen=True)
class HourSignals:
    """The gates of one bar close: results for symbols with usable bars, the reason for the others."""

    time: datetime
    gates: list[GateResults]  # configured symbol order
    problems: dict[str, str]  # symbol -> why its bars were not usable (a `data_invalid` decision)
    last_close: dict[str, Decimal]  # price hints for the orders, as the live cycle passes them
    facts: dict[str, ForecastFacts] = field(default_factory=dict)  # what scoring the forecast needs
    # The forecast behind each Kronos verdict: `trials` re-derives the verdict with other thresholds.
    forecasts: dict[str, SeriesForecast] = field(default_factory=dict)


@dataclass
class _Cell:
    raw: RawWindow
    checked: CheckedWindow
    frame: pd.DataFrame | None


class SignalSource:
    """Computes `HourSignals` for chunks of consecutive hours (see module doc)."""

    def __init__(
        self,
        settings: Settings,
        store: BarStore,
        book: ForecastBook | None,
        news_feed: NewsFeed,
        cache: CacheStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.book = book
        self.news_feed = news_feed
        self.symbols = list(settings.symbols)
        self.bars_memo = BarsMemo(cache, settings.bars)
        self.technical_memo = TechnicalMemo(cache, settings.gates.technical)

    def chunk(self, times: Sequence[datetime]) -> list[HourSignals]:
        """Signals for consecutive bar closes `times` (ascending); forecasts batched over all of them."""
        cells: dict[tuple[datetime, str], _Cell] = {}
        for t in times:
            for symbol in self.symbols:
                raw = self.store.window(symbol, t, self.settings.bars)
                checked, frame = self.bars_memo.check(raw)
                cells[(t, symbol)] = _Cell(raw, checked, frame)
        technical = {k: self._technical(c) for k, c in cells.items() if c.checked.ok}
        self._facts: dict[tuple[datetime, str], ForecastFacts] = {}
        self._forecasts: dict[tuple[datetime, str], SeriesForecast] = {}
        kronos = self._kronos(cells)
        out = []
        for t in times:
            valid = [s for s in self.symbols if cells[(t, s)].checked.ok]
            sentiment = sentiment_gates(valid, t, self.settings.gates.sentiment, self.news_feed) if valid else {}
            out.append(
                HourSignals(
                    time=t,
                    gates=[GateResults(s, technical[(t, s)], sentiment[s], kronos[(t, s)]) for s in valid],
                    problems={s: cells[(t, s)].checked.problem_text for s in self.symbols if s not in valid},
                    last_close={s: Decimal(repr(cells[(t, s)].checked.last_close)) for s in valid},
                    facts={s: self._facts[(t, s)] for s in valid if (t, s) in self._facts},
                    forecasts={s: self._forecasts[(t, s)] for s in valid if (t, s) in self._forecasts},
                )
            )
        return out

    def _frame(self, cell: _Cell) -> pd.DataFrame:
        if cell.frame is None:
            cell.frame = self.bars_memo.frame(cell.raw)
        return cell.frame

    def _technical(self, cell: _Cell) -> TechnicalResult:
        known = self.technical_memo.known(cell.checked.digest)
        return known if known is not None else self.technical_memo.compute(cell.checked.digest, self._frame(cell))

    def _kronos(self, cells: dict[tuple[datetime, str], _Cell]) -> dict[tuple[datetime, str], KronosResult]:
        settings = self.settings.gates.kronos
        results: dict[tuple[datetime, str], KronosResult] = {}
        jobs: dict[tuple[datetime, str], ForecastJob] = {}
        for cell_key, cell in cells.items():
            c = cell.checked
            if not c.ok:
                continue
            if self.book is None:
                results[cell_key] = unavailable("no forecaster", settings.method, c.last_close)
                continue
            assert c.last_bar is not None
            key = forecast_key(c.symbol, c.last_bar, c.count, c.digest)
            forecast = self.book.lookup(key)
            if forecast is not None:
                results[cell_key] = kronos_gate(forecast, c.last_close, settings)
                self._note_facts(cell_key, cell, forecast)
            else:
                jobs[cell_key] = ForecastJob(key, c.symbol, c.last_bar, self._frame(cell))
        if jobs and self.book is not None:
            # Rows = every cell that was not a cache hit, valid or not (see forecast_cache's module doc):
            # `results` holds exactly the hits here.
            computed = self.book.compute(list(jobs.values()), rows=len(cells) - len(results))
            for cell_key, job in jobs.items():
                outcome = computed[job.key]
                last_close = cells[cell_key].checked.last_close
                if isinstance(outcome, str):
                    results[cell_key] = unavailable(outcome, settings.method, last_close)
                else:
                    results[cell_key] = kronos_gate(outcome, last_close, settings)
                    self._note_facts(cell_key, cells[cell_key], outcome)
        return results

    def _note_facts(self, cell_key: tuple[datetime, str], cell: _Cell, forecast: SeriesForecast) -> None:
        """What scoring this forecast needs (as the live trader journals it); the context's closes come
        from the raw window, so no validated frame is rebuilt for a cached forecast."""
        self._forecasts[cell_key] = forecast
        horizon = self.settings.gates.kronos.horizon
        index = horizon - 1
        c = cell.checked
        if c.last_close is None or len(forecast.candles) <= index or not forecast.path_closes:
            return
        raw = cell.raw
        self._facts[cell_key] = facts_from_paths(
            last_close=float(c.last_close),
            predicted=float(forecast.candles[index].close),
            horizon_closes=[path[index] for path in forecast.path_closes if len(path) > index],
            context_closes=raw.source.values[raw.lo : raw.hi, 3].tolist(),
            horizon=horizon,
        )
