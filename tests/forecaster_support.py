"""Helpers shared by the tests/test_forecaster_*.py files: the tiny model, test series, wrappers.

The tiny fixture checkpoints go through the real loading code once per test process (cached), and
the wrappers below give the service the misbehaviours the tests need (slow, flaky, blocked loads).
"""

from __future__ import annotations

import atexit
import csv
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from kronos_bot.config import Settings
from kronos_bot.forecast_types import Forecaster, SamplingParams, SeriesForecast, SeriesInput

if TYPE_CHECKING:
    from kronos_bot.forecaster.server import Endpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_MODEL = FIXTURES / "kronos_tiny" / "model"
TINY_TOKENIZER = FIXTURES / "kronos_tiny" / "tokenizer"
TOKEN = "test-token-0123456789"


def tiny_settings(**forecaster: Any) -> Settings:
    """Settings whose forecaster section points at the tiny fixture checkpoints (no Hub, no hashes)."""
    section: dict[str, Any] = {
        "model": str(TINY_MODEL),
        "tokenizer": str(TINY_TOKENIZER),
        "model_revision": None,
        "tokenizer_revision": None,
        "verify_sha256": False,
        "threads": 1,
        "backoff_seconds": 0.01,
        "request_timeout_seconds": 10.0,
    }
    section.update(forecaster)
    return Settings(forecaster=section)


@lru_cache(maxsize=1)
def tiny_model() -> Forecaster:
    """The tiny Kronos loaded through the real loader, once per test process."""
    from kronos_bot.forecaster.factory import load_model

    return load_model(tiny_settings())


@lru_cache(maxsize=1)
def fixture_bars() -> list[dict[str, Any]]:
    with (FIXTURES / "kronos_tiny" / "bars.csv").open() as fh:
        return [
            {
                "timestamp": datetime.fromisoformat(row["timestamp"]),
                **{k: float(row[k]) for k in ("open", "high", "low", "close", "volume", "amount")},
            }
            for row in csv.DictReader(fh)
        ]


def make_series(series_id: str = "BTC/USD", bars: int = 60, offset: int = 0) -> SeriesInput:
    """`bars` real hourly BTC bars from the fixture CSV, starting at row `offset`."""
    rows = fixture_bars()[offset : offset + bars]
    assert len(rows) == bars, "fixture CSV too short"
    return SeriesInput(
        id=series_id,
        timestamps=[r["timestamp"] for r in rows],
        **{k: [r[k] for r in rows] for k in ("open", "high", "low", "close", "volume", "amount")},
    )


def synthetic_series(series_id: str, bars: int, start: float = 100.0) -> SeriesInput:
    """A clean rising series of any length (for size limits)."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    closes = [start * (1 + 0.001 * i) for i in range(bars)]
    return SeriesInput(
        id=series_id,
        timestamps=[t0 + timedelta(hours=i) for i in range(bars)],
        open=closes,
        high=[c * 1.01 for c in closes],
        low=[c * 0.99 for c in closes],
        close=closes,
        volume=[10.0] * bars,
    )


def short_socket_path() -> str:
    """A socket path well under the AF_UNIX limit (pytest's tmp_path can be too long); removed at exit."""
    directory = tempfile.mkdtemp(prefix="kf", dir="/tmp")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return str(Path(directory) / "f.sock")


class BlockingLoader:
    """A model loader that waits for `release()`; lets a test look at the service while it loads."""

    def __init__(self, model: Forecaster | None = None, error: Exception | None = None) -> None:
        self.model = model
        self.error = error
        self.gate = threading.Event()

    def release(self) -> None:
        self.gate.set()

    def __call__(self) -> Forecaster:
        if not self.gate.wait(30):
            raise TimeoutError("test never released the loader")
        if self.error is not None:
            raise self.error
        return self.model or tiny_model()


class InstrumentedForecaster:
    """Wraps a model: counts calls, records the most runs in flight at once, can fail or slow down."""

    def __init__(self, inner: Forecaster, *, fail_times: int = 0, delay: float = 0.0) -> None:
        self.inner = inner
        self.fail_times = fail_times
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fail = self.calls <= self.fail_times
        try:
            if self.delay:
                time.sleep(self.delay)
            if fail:
                raise RuntimeError(f"injected failure {self.calls}")
            return self.inner.forecast(series, params)
        finally:
            with self._lock:
                self.in_flight -= 1

    def model_info(self) -> dict[str, object]:
        return self.inner.model_info()


def forecasts_equal(a: Sequence[SeriesForecast], b: Sequence[SeriesForecast]) -> bool:
    """Same ids, candles, paths, p_up and quantiles (compute times aside)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if (x.id, x.last_close, x.candles, x.path_closes, x.p_up, x.close_quantiles, x.extra) != (
            y.id,
            y.last_close,
            y.candles,
            y.path_closes,
            y.p_up,
            y.close_quantiles,
            y.extra,
        ):
            return False
    return True


def http_client(endpoint: Endpoint, token: str | None = None) -> httpx.Client:
    """A raw HTTP client of a running forecaster (Unix socket or TCP), with the bearer token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if endpoint.socket_path:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=endpoint.socket_path), base_url="http://f", headers=headers, timeout=30
        )
    return httpx.Client(base_url=str(endpoint.url), headers=headers, timeout=30)
