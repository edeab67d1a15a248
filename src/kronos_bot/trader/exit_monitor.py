"""The exit monitor (every 60 s): trailing stops for every open journal position, I/O at the edge.

Per tick: one broker positions request and one listing of open orders; for each open journal position
the latest (sanity-checked) price; the pure `exits.update_stop` raises the HWM/stop, the journal stores it
(`stop.raised`), the broker-side backstop follows in steps and is checked against the live orders (exactly
one per position, the one the journal names), and an exit reason hands the position to `Executor.exit`,
which frees the coins and sells the broker's free quantity. A position that vanished at the broker is
closed by whichever of our orders sold it (`backstop`, an exit sent before a crash) or else `external`.
One failing position never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from kronos_bot.broker.base import Broker, BrokerPosition, BrokerUnavailable, OrderResult
from kronos_bot.config import Settings
from kronos_bot.logs import get_logger
from kronos_bot.trader.execution import Executor
from kronos_bot.trader.health import DegradedTracker
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.records import PositionRecord
from kronos_bot.trader.stops import update_stop

PriceSource = Callable[[str], Decimal | None]
log = get_logger("kronos_bot.trader.exit_monitor")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ExitMonitor:
    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        executor: Executor,
        settings: Settings,
        price_source: PriceSource,
        *,
        clock: Callable[[], datetime] = _utcnow,
        health: DegradedTracker | None = None,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.executor = executor
        self.settings = settings
        self.price_source = price_source
        self.clock = clock
        self.health = health
        self._without_price: set[str] = set()

    def run_once(self, now: datetime | None = None) -> list[PositionRecord]:
        """One tick over all open positions; returns the positions closed in it."""
        with self.executor.lock:
            return self._run_once(now or self.clock())

    def _run_once(self, now: datetime) -> list[PositionRecord]:
        positions = self.journal.open_positions()
        if not positions:
            return []
        try:
            held = {p.symbol: p for p in self.broker.get_positions()}
        except BrokerUnavailable as exc:
            self._report_unavailable(exc, len(positions))
            return []
        try:
            # One listing per tick: the backstops are checked against what is really live at the broker.
            live: list[OrderResult] | None = self.broker.get_open_orders()
        except BrokerUnavailable as exc:
            self._report_unavailable(exc, len(positions))
            live = None
        closed = []
        for position in positions:
            try:
                result = self.check(position, held.get(position.symbol), now, live=live)
            except BrokerUnavailable as exc:
                self._report_unavailable(exc, 1)
                continue
            except Exception:  # one broken position must not stop the trailing stops of the others
                log.exception("exit.error", symbol=position.symbol, position_id=position.id)
                continue
            if result is not None:
                closed.append(result)
        if live is not None:
            self.executor.backstops.cancel_orphans(live, self.journal.open_positions())
        return closed

    def _report_unavailable(self, exc: BrokerUnavailable, positions: int) -> None:
        """Once per outage at warning (the broker's degraded state carries it); repeats at debug, counted."""
        quiet = self.health is not None and self.health.repeat(("broker", "broker_auth"), "exit.broker_unavailable")
        (log.debug if quiet else log.warning)("exit.broker_unavailable", error=str(exc), positions=positions)

    def check(
        self,
        position: PositionRecord,
        broker_position: BrokerPosition | None,
        now: datetime,
        live: Sequence[OrderResult] | None = None,
    ) -> PositionRecord | None:
        """One position through one price tick. `live`: the broker's open orders of this tick (None in
        backtests, whose simulated broker is synchronous, so the journal is trusted)."""
        symbol = position.symbol
        price = self._price(symbol)
        if broker_position is None or broker_position.qty <= 0:
            return self.executor.close_vanished(position, now=now, price=price)
        if broker_position.qty < position.qty:
            # The broker's quantity is the truth (fee in coin, a partial backstop fill...): never sell more.
            log.info(
                "position.qty_synced",
                symbol=symbol,
                position_id=position.id,
                journal_qty=position.qty,
                broker_qty=broker_position.qty,
            )
            self.journal.update_qty(position.id, broker_position.qty)
            position = self.journal.get_position(position.id)
        if price is None:
            self._no_price(symbol, position.id)
            try:
                self.executor.sync_backstop(position, live)  # the stop is unchanged, but keep exactly one live
            except BrokerUnavailable as exc:
                log.warning("backstop.deferred", symbol=symbol, error=str(exc))
            return None
        self._without_price.discard(symbol)
        old = position.stop_state()
        new, reason = update_stop(old, price, self.settings.exits, now)
        if new != old:
            self.journal.update_stop(position.id, new)
            if new.stop_price is not None and (old.stop_price is None or new.stop_price > old.stop_price):
                log.info(
                    "stop.raised",
                    symbol=symbol,
                    position_id=position.id,
                    price=price,
                    hwm=new.hwm,
                    stop=new.stop_price,
                    previous_stop=old.stop_price,
                    trail_armed=new.trail_armed,
                )
            position = self.journal.get_position(position.id)
        if reason is not None:
            log.info(
                "exit.triggered",
                symbol=symbol,
                position_id=position.id,
                reason=reason.value,
                price=price,
                hwm=new.hwm,
                stop=new.stop_price,
            )
            return self.executor.exit(position, reason, price=price, now=now, live=live)
        try:
            self.executor.sync_backstop(position, live)
        except BrokerUnavailable as exc:
            log.warning("backstop.deferred", symbol=symbol, error=str(exc))
        return None

    def _no_price(self, symbol: str, position_id: int) -> None:
        """No usable price (outage, or a suspect one the price book holds back): said once per episode."""
        if symbol in self._without_price:
            log.debug("exit.no_price", symbol=symbol, position_id=position_id)
            return
        self._without_price.add(symbol)
        log.warning(
            "exit.no_price",
            symbol=symbol,
            position_id=position_id,
            effect="this position's stop is not moved or checked until a usable price arrives",
        )

    def _price(self, symbol: str) -> Decimal | None:
        try:
            price = self.price_source(symbol)
        except Exception as exc:  # the data source is someone else's: treat any failure as "no price now"
            log.warning("exit.price_failed", symbol=symbol, error=str(exc))
            return None
        return Decimal(str(price)) if price is not None and not isinstance(price, Decimal) else price
