"""pytest plugin (listed in tests/conftest.py): the `fake_alpaca` fixture, one fresh server per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakealpaca import FakeAlpaca


@pytest.fixture
def fake_alpaca() -> Iterator[FakeAlpaca]:
    """A running FakeAlpaca on 127.0.0.1; `.base_url`, `.market` (scenario state), `.fail(...)`, `.requests`.

    Function scope so that no scenario, fault or request log leaks between tests; starting one costs
    about a millisecond. After the test, a handler exception inside the fake fails the test loudly.
    """
    fake = FakeAlpaca().start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.server.handler_errors, f"fake Alpaca handler errors: {fake.server.handler_errors!r}"
