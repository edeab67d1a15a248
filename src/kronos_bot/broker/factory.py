"""Which broker a process trades through: Alpaca (paper, or live behind two switches) or the simulator.

Kept out of the package's `__init__`, which only holds the interface: choosing a broker needs the
configuration and the journal (the simulator keeps its state in the journal's file), and the interface
must stay importable by the journal itself without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from kronos_bot.broker.base import Broker
from kronos_bot.config import Settings
from kronos_bot.retry import OutageLog
from kronos_bot.trader.journal import Journal


def make_broker(
    settings: Settings,
    journal: Journal,
    price_source: Callable[[str], Decimal | None],
    clock: Callable[[], datetime] | None = None,
    health: OutageLog | None = None,
) -> Broker:
    """The broker `settings.effective_broker()` names. Alpaca refuses live trading unless both switches are set.

    `health`: where Alpaca reports its outages (`broker`) and refused keys (`broker_auth`)."""
    if settings.effective_broker() == "alpaca":
        from kronos_bot.broker.alpaca import AlpacaBroker

        return AlpacaBroker.from_settings(settings, health=health)
    from kronos_bot.broker.sim import SimBroker

    sim = SimBroker(journal, settings.broker.sim, price_source, min_notional=Decimal(str(settings.sizing.min_notional)))
    if clock is not None:
        sim.clock = clock
    return sim
