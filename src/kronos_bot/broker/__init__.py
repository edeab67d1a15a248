"""Brokers: one interface (`base.Broker`), two implementations (`alpaca`, `sim`), chosen by `make_broker`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from kronos_bot.broker.base import (
    Account,
    AssetInfo,
    Broker,
    BrokerAuthError,
    BrokerError,
    BrokerPosition,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    OrderResult,
    OrderSide,
    OrderSkipped,
    OrderStatus,
    OrderType,
    client_order_id,
)

if TYPE_CHECKING:
    from kronos_bot.config import Settings
    from kronos_bot.trader.health import DegradedTracker
    from kronos_bot.trader.journal import Journal

__all__ = [
    "Account",
    "AssetInfo",
    "Broker",
    "BrokerAuthError",
    "BrokerError",
    "BrokerPosition",
    "BrokerUnavailable",
    "OrderNotFound",
    "OrderRejected",
    "OrderRequest",
    "OrderResult",
    "OrderSide",
    "OrderSkipped",
    "OrderStatus",
    "OrderType",
    "client_order_id",
    "make_broker",
]


def make_broker(
    settings: Settings,
    journal: Journal,
    price_source: Callable[[str], Decimal | None],
    clock: Callable[[], datetime] | None = None,
    health: DegradedTracker | None = None,
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
