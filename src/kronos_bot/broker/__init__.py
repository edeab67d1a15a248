"""Brokers: one interface (`base.Broker`), two implementations (`alpaca`, `sim`), chosen by
`factory.make_broker`. Importing this package imports only the interface and its value types."""

from __future__ import annotations

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
]
