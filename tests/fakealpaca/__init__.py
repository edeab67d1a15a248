"""Our fake Alpaca: a real HTTP server on 127.0.0.1 that alpaca-py talks to through `url_override`.

`FakeAlpaca` bundles the generic server (`server.py`), the market-data routes and their scenario state
(`market.py`) and, once written, the trading routes (`trading.py`). Tests normally get one from the
`fake_alpaca` fixture (`fixtures.py`); point both `bars.data_url_override` and
`broker.trading_url_override` at `fake.base_url`: one server answers both APIs, as their paths differ.

Extending it with the trading API: `tests/fakealpaca/trading.py` defines
`install(fake: FakeAlpaca) -> None`, which sets `fake.trading` to its state object and registers its
routes with `fake.server.add_route(...)`. `FakeAlpaca.start()` calls it when that module exists, so the
fixture needs no edit.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tests.fakealpaca.market import MarketState
from tests.fakealpaca.market import install as install_market
from tests.fakealpaca.server import FakeServer, Fault, FaultHandle, Request, Response

__all__ = ["FakeAlpaca", "FakeServer", "Fault", "FaultHandle", "MarketState", "Request", "Response"]


class FakeAlpaca:
    """The fake server plus the state behind its Alpaca routes."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.market = MarketState()
        # Filled by tests/fakealpaca/trading.py's install() when that module exists.
        self.trading: Any = None
        install_market(self.server, self.market)
        try:
            trading = importlib.import_module("tests.fakealpaca.trading")
        except ModuleNotFoundError as exc:
            if exc.name != "tests.fakealpaca.trading":
                raise
        else:
            trading.install(self)

    def start(self) -> FakeAlpaca:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeAlpaca:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    # Shortcuts to the server, which tests use most.
    def fail(
        self,
        pattern: str,
        fault: Fault,
        *,
        times: int | None = 1,
        method: str = "*",
        when: Callable[[Request], bool] | None = None,
    ) -> FaultHandle:
        return self.server.fail(pattern, fault, times=times, method=method, when=when)

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def requests_to(self, pattern: str, method: str | None = None) -> list[Request]:
        return self.server.requests_to(pattern, method)
