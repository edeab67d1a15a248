"""Shared set-up for tests that drive the Alpaca broker, executor and exit monitor against the fake."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from structlog.testing import capture_logs

from kronos_bot.broker.alpaca import AlpacaBroker
from kronos_bot.config import Settings
from kronos_bot.domain import Action, Decision, Tier
from kronos_bot.trader.execution import Executor
from kronos_bot.trader.exit_monitor import ExitMonitor
from kronos_bot.trader.journal import Journal
from tests.fakealpaca import FakeAlpaca, Request

D = Decimal
T0 = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
ORDERS = r"/v2/orders"

KEYS = {"ALPACA_API_KEY": "PKFAKEKEY123", "ALPACA_SECRET_KEY": "fake-secret-abcdef"}


def make_settings(fake: FakeAlpaca | None = None, **sections: Any) -> Settings:
    base: dict[str, Any] = {
        "broker": {
            "kind": "alpaca",
            "request_timeout_seconds": 0.4,
            "max_attempts": 3,
            "trading_url_override": fake.base_url if fake else "http://127.0.0.1:9",
        },
        "exits": {
            "trail_percent": 2,
            "trail_activation_percent": 0,
            "stop_loss_percent": 5,
            "backstop": {"enabled": True, "limit_offset_percent": 1, "replace_step_percent": 0.5},
        },
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return Settings(**base, **KEYS)


@dataclass
class Rig:
    fake: FakeAlpaca
    settings: Settings
    broker: AlpacaBroker
    journal: Journal
    executor: Executor
    monitor: ExitMonitor
    sleeps: list[float]
    clock: list[datetime]

    def now(self) -> datetime:
        return self.clock[0]

    def tick(self, price: str, minutes: int = 1) -> list[Any]:
        self.clock[0] += timedelta(minutes=minutes)
        self.fake.trading.set_price("BTC/USD", price)
        return self.monitor.run_once()


def build_rig(fake: FakeAlpaca, path: Path, **sections: Any) -> Rig:
    settings = make_settings(fake, **sections)
    sleeps: list[float] = []
    clock = [T0]
    broker = AlpacaBroker.from_settings(settings, sleep=sleeps.append)
    journal = Journal(path)
    executor = Executor(broker, journal, settings, clock=lambda: clock[0], sleep=lambda s: None, fill_timeout_seconds=1)
    monitor = ExitMonitor(
        broker, journal, executor, settings, lambda s: fake.trading.prices.get(s), clock=lambda: clock[0]
    )
    return Rig(fake, settings, broker, journal, executor, monitor, sleeps, clock)


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog events as dicts, whatever level an earlier test configured (test_logs sets WARNING)."""
    structlog.reset_defaults()
    with capture_logs() as logs:
        yield logs


def standard_rig(fake: FakeAlpaca, path: Path, **sections: Any) -> Rig:
    """1000 USD cash, BTC/USD at 100 with Alpaca-like increments (qty 0.0001, price 0.01)."""
    fake.trading.cash = D("1000")
    fake.trading.set_price("BTC/USD", "100")
    fake.trading.add_asset("BTC/USD", min_order_size="0.0001", min_trade_increment="0.0001", price_increment="0.01")
    return build_rig(fake, path, **sections)


def buys(fake: FakeAlpaca) -> list[Request]:
    """POST /v2/orders requests for market buys (the backstop's stop_limit POST is not one)."""
    return [r for r in fake.requests_to(ORDERS, method="POST") if r.json["side"] == "buy"]


def enter(rig: Rig, notional: str = "100", when: datetime = T0, symbol: str = "BTC/USD"):
    decision = Decision(symbol, Action.ENTER, Tier.TRIPLE_CONFIRMED, D(notional), ["triple_confirmed"], when)
    return rig.executor.enter(decision, cycle_time=when)
