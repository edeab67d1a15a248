"""Stage B of a backtest: the account, run by the daemon's own engine, executor, broker and exit monitor.

Wiring: a SQLite journal in memory, the simulated broker built by `broker.make_broker` (as a dry run
builds it; `broker.kind` is forced to `sim`), `Executor`, `ExitMonitor` -- all on a simulated clock and a
replayed price source. Per bar boundary `t` the runner calls, in this order:
  1. `exits(t - 1h)`: every open position goes through the bar that just closed (see `bar_exits`).
  2. `set_marks(t)` + `snapshot(t)`: prices become the open of the bar starting at `t`; equity = cash +
     positions at those prices.
  3. `decide_and_enter(signals at t)`: `engine.decide_all` with the executor's own `risk_state` (open
     positions, pending entries, cash, cooldowns, the UTC day's realized P&L), then `Executor.execute`
     for the ENTERs: market buys fill at that next-bar open plus slippage, fee taken in the coin, like
     Alpaca.
Reconciliation is not run: the simulated broker fills synchronously, so there is nothing to reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from kronos_bot.backtest.bar_exits import Tick, monitor_ticks
from kronos_bot.backtest.data import BarStore
from kronos_bot.backtest.signals import HourSignals
from kronos_bot.broker.factory import make_broker
from kronos_bot.config import Settings
from kronos_bot.domain import Action, Decision
from kronos_bot.logs import get_logger
from kronos_bot.trader.engine import decide_all
from kronos_bot.trader.execution import EntryOutcome, Executor
from kronos_bot.trader.exit_monitor import ExitMonitor
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.records import PositionRecord

HOUR = timedelta(hours=1)
ZERO = Decimal(0)

log = get_logger("kronos_bot.backtest")


class ReplayClock:
    """The clock every part reads; the replay moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class ReplayPrices:
    """The price source of the broker and the exit monitor: what the replay says the market trades at."""

    def __init__(self) -> None:
        self._prices: dict[str, Decimal] = {}

    def __call__(self, symbol: str) -> Decimal | None:
        return self._prices.get(symbol)

    def set(self, symbol: str, price: Decimal | None) -> None:
        if price is not None:
            self._prices[symbol] = price

    def update(self, prices: Mapping[str, Decimal | None]) -> None:
        for symbol, price in prices.items():
            self.set(symbol, price)


@dataclass(frozen=True)
class EquityPoint:
    time: datetime
    equity: Decimal
    cash: Decimal
    invested: Decimal  # market value of open positions


class Replay:
    """The account side of one backtest (see module doc)."""

    def __init__(self, settings: Settings, store: BarStore, start: datetime) -> None:
        if settings.effective_broker() != "sim":
            raise ValueError("a backtest needs broker.kind = sim")
        self.settings = settings
        self.store = store
        self.clock = ReplayClock(start)
        self.prices = ReplayPrices()
        self.journal = Journal(":memory:")
        self.broker = make_broker(settings, self.journal, self.prices, clock=self.clock)
        # The journal is this replay's alone, and a rolled-back hour ends the replay (see SimStore).
        self.broker.store.keep_in_memory()  # type: ignore[attr-defined]
        self.executor = Executor(self.broker, self.journal, settings, clock=self.clock, sleep=lambda _s: None)
        self.monitor = ExitMonitor(self.broker, self.journal, self.executor, settings, self.prices, clock=self.clock)
        self.entries: list[EntryOutcome] = []
        self.exit_mismatches = 0
        self._marked: datetime | None = None
        self._open: list[PositionRecord] | None = None  # the last read of the open positions ...
        self._open_at = -1  # ... at this count of the journal's row changes

    # ----- 1. exits -----

    def exits(self, bar_open: datetime) -> list[PositionRecord]:
        """Every open position through the bar opening at `bar_open`; returns the positions it closed."""
        closed: list[PositionRecord] = []
        self._marked = None  # exit ticks move prices away from the marks
        for position in self.open_positions():
            bar = self.store.bar(position.symbol, bar_open)
            if bar is None:
                continue  # no trades that hour: the last price stands, nothing new to check
            verdict, ticks = monitor_ticks(position.stop_state(), bar, self.settings.exits)
            backstop_before = position.backstop_stop
            done = self.through_ticks(position, ticks)
            if done is None and verdict.reason is not None:
                # Only a bar whose low reached the pre-bar stop can reach the backstop (which is never above it).
                done = self._backstop(position.id, bar_open, backstop_before)
            if done is None and verdict.reason is not None:
                self.exit_mismatches += 1
                log.warning(
                    "backtest.exit_not_executed",
                    symbol=position.symbol,
                    position_id=position.id,
                    reason=verdict.reason.value,
                    price=verdict.price,
                    bar=bar_open.isoformat(),
                )
            if done is not None:
                closed.append(done)
        return closed

    def through_ticks(self, position: PositionRecord, ticks: list[Tick]) -> PositionRecord | None:
        """The live exit monitor over one bar's ticks (`bar_exits.monitor_ticks`); the position if it closed."""
        current = position
        for i, tick in enumerate(ticks):
            self.clock.now = tick.time
            self.prices.set(position.symbol, tick.price)
            if i:
                current = self.journal.get_position(position.id)
            done = self.monitor.check(current, self.broker.get_position(position.symbol), tick.time)
            if done is not None:
                return done
        return None

    def open_positions(self) -> list[PositionRecord]:
        """The journal's open positions, read again only when a row of the journal changed since.

        Why: every replayed hour asks, and most hours write nothing (no new high, no exit, no entry).
        The connection's `total_changes` counts every row inserted, updated or deleted (rolled back or
        not), and this journal has no other writer, so an unchanged count means an unchanged answer.
        """
        with self.journal.transaction() as conn:
            changes = conn.total_changes
        if self._open is None or changes != self._open_at:
            self._open = self.journal.open_positions()
            self._open_at = changes
        return list(self._open)

    def _backstop(self, position_id: int, bar_open: datetime, backstop_before: Decimal | None) -> PositionRecord | None:
        """A backstop resting through the whole bar meets the bar's low (SimBroker.on_bar).

        The monitor's stop is never below the backstop's, so this can only fire when the monitor could not
        sell; a backstop moved up during this bar is left alone (its level did not exist at the bar's low).
        """
        position = self.journal.get_position(position_id)
        if not position.is_open or position.backstop_order_id is None or position.backstop_stop != backstop_before:
            return None
        bar = self.store.bar(position.symbol, bar_open)
        assert bar is not None
        end = bar_open + HOUR
        self.clock.now = end
        if not self.broker.on_bar(position.symbol, bar.open, bar.high, bar.low, bar.close):  # type: ignore[attr-defined]
            return None
        self.prices.set(position.symbol, bar.close)
        return self.monitor.check(position, self.broker.get_position(position.symbol), end)

    # ----- 2. decisions and entries -----

    def set_marks(self, t: datetime) -> None:
        """Clock to `t`, every price to the market price at `t` (the open of the bar starting then)."""
        self.clock.now = t
        self.prices.update({s: self.store.mark(s, t) for s in self.settings.symbols})
        self._marked = t

    def decide_and_enter(self, signals: HourSignals) -> list[Decision]:
        """The engine's decisions at `signals.time` (configured symbol order) and the resulting entries."""
        t = signals.time
        if self._marked != t:
            self.set_marks(t)
        by_symbol: dict[str, Decision] = {}
        if signals.gates:
            risk = self.executor.risk_state(t)
            by_symbol = {d.symbol: d for d in decide_all(signals.gates, risk, self.settings, t)}
        for symbol, problem in signals.problems.items():
            # Worded exactly as the live cycle words a symbol whose bars failed validation.
            by_symbol[symbol] = Decision(
                symbol=symbol,
                action=Action.SKIP,
                tier=None,
                notional=ZERO,
                reasons=["data_invalid"],
                decided_at=t,
                detail=f"bars: {problem}",
            )
        decisions = [by_symbol[s] for s in self.settings.symbols if s in by_symbol]
        entering = [d for d in decisions if d.action is Action.ENTER]
        if entering:
            cycle_time = t.replace(second=0, microsecond=0)
            self.entries += self.executor.execute(entering, cycle_time, price_hints=signals.last_close)
        return decisions

    # ----- 3. valuation -----

    def snapshot(self, t: datetime) -> EquityPoint:
        """Equity at the current prices (call `set_marks(t)` first)."""
        account = self.broker.get_account()
        return EquityPoint(t, account.equity, account.cash, account.equity - account.cash)

    def positions(self) -> list[PositionRecord]:
        """Every position of the run: closed ones by exit time, then the ones still open."""
        return self.journal.closed_positions() + self.journal.open_positions()

    def close(self) -> None:
        self.journal.close()
