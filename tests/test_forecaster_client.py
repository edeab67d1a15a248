"""The trader's client: retries on connection errors and 5xx only, clear errors, readiness waits."""

from __future__ import annotations

import math
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from kronos_bot.forecast_types import ForecasterUnavailable, ForecastInputError, SamplingParams
from kronos_bot.forecaster.client import ForecasterClient, ForecasterRequestError
from kronos_bot.forecaster.server import BackgroundServer
from kronos_bot.forecaster.service import ServiceLimits, create_app
from tests.forecaster_support import (
    BlockingLoader,
    InstrumentedForecaster,
    forecasts_equal,
    make_series,
    short_socket_path,
    tiny_model,
)


class CountingApp:
    """ASGI wrapper counting HTTP requests per path, to prove what the client did (not) retry."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: dict[str, int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.counts[scope["path"]] = self.counts.get(scope["path"], 0) + 1
        await self.app(scope, receive, send)


def served(model: Any, limits: ServiceLimits | None = None, loader: Any = None) -> tuple[BackgroundServer, CountingApp]:
    app = create_app(loader or (lambda: model), limits=limits or ServiceLimits())
    counter = CountingApp(app.middleware_stack or app.build_middleware_stack())
    app.middleware_stack = counter  # type: ignore[assignment]
    server = BackgroundServer(app, host="127.0.0.1").start()
    if loader is None:
        server.wait_ready(60)
    return server, counter


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(server: BackgroundServer, sleeps: list[float], **kwargs: Any) -> ForecasterClient:
    kwargs.setdefault("max_attempts", 3)
    kwargs.setdefault("backoff_seconds", 0.05)
    return ForecasterClient(url=server.endpoint.url, sleep=sleeps.append, **kwargs)


def test_retries_a_server_that_fails_twice_then_succeeds(sleeps: list[float]) -> None:
    model = InstrumentedForecaster(tiny_model(), fail_times=2)
    server, counter = served(model)
    try:
        params = SamplingParams(samples=4, seed=9)
        with capture_logs() as logs, make_client(server, sleeps) as client:
            result = client.forecast([make_series()], params)
    finally:
        server.stop()
    assert forecasts_equal(result, tiny_model().forecast([make_series()], params))
    assert model.calls == 3 and counter.counts["/v1/forecast"] == 3
    assert sleeps == [0.05, 0.1]  # doubling backoff
    retries = [e for e in logs if e["event"] == "forecaster.retry"]
    assert [e["attempt"] for e in retries] == [1, 2] and "HTTP 500" in retries[0]["error"]


def test_gives_up_after_max_attempts_with_forecaster_unavailable(sleeps: list[float]) -> None:
    model = InstrumentedForecaster(tiny_model(), fail_times=99)
    server, counter = served(model)
    try:
        with (
            make_client(server, sleeps) as client,
            pytest.raises(ForecasterUnavailable, match="after 3 attempts: HTTP 500"),
        ):
            client.forecast([make_series()], SamplingParams(seed=1))
    finally:
        server.stop()
    assert counter.counts["/v1/forecast"] == 3 and len(sleeps) == 2


def test_never_retries_4xx(sleeps: list[float]) -> None:
    server, counter = served(tiny_model(), limits=ServiceLimits(max_request_cells=100, min_context_bars=16))
    try:
        with make_client(server, sleeps) as client:
            with pytest.raises(ForecastInputError) as invalid:
                client.forecast([make_series("TINY", bars=10)], SamplingParams(seed=1))
            assert invalid.value.series_id == "TINY" and invalid.value.problem == "too few bars: 10 < 16"
            with pytest.raises(ForecasterRequestError) as too_large:
                client.forecast([make_series()], SamplingParams(seed=1, samples=2))
            assert too_large.value.status == 413 and "max_request_cells 100" in str(too_large.value)
            assert isinstance(too_large.value, ForecasterUnavailable)  # callers that degrade keep working
    finally:
        server.stop()
    assert counter.counts["/v1/forecast"] == 2 and sleeps == []


def test_bad_series_are_refused_locally_without_a_request(sleeps: list[float]) -> None:
    bad = make_series("ETH/USD")
    bad = replace(bad, open=[math.nan, *bad.open[1:]])
    client = ForecasterClient(socket_path="/nonexistent/forecaster.sock", sleep=sleeps.append)
    with pytest.raises(ForecastInputError, match=r"'ETH/USD': bar 0 .* open is nan"):
        client.forecast([make_series(), bad], SamplingParams())
    assert client.forecast([], SamplingParams()) == []
    assert sleeps == []


def test_unavailable_when_nothing_listens_on_the_socket(sleeps: list[float]) -> None:
    path = short_socket_path()
    try:
        with ForecasterClient(socket_path=path, max_attempts=2, backoff_seconds=0.01, sleep=sleeps.append) as client:
            expected = f"unix:{path} unavailable after 2 attempts: no socket at unix:{path}"
            with pytest.raises(ForecasterUnavailable, match=expected):
                client.forecast([make_series()], SamplingParams())
            assert client.probe() == "down"
            with pytest.raises(ForecasterUnavailable, match=r"not ready after 0 s \(nothing answers"):
                client.wait_ready(0)
    finally:
        shutil.rmtree(Path(path).parent, ignore_errors=True)
    assert sleeps == [0.01]


def test_unavailable_when_nothing_listens_on_tcp(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ForecasterClient(url=f"http://127.0.0.1:{port}", max_attempts=3, backoff_seconds=0.01, sleep=sleeps.append)
    with client:
        with pytest.raises(ForecasterUnavailable, match="after 3 attempts"):
            client.model_info()
        with pytest.raises(ForecasterUnavailable, match="does not answer /healthz"):
            client.health()


def test_wait_ready_follows_a_loading_service_and_caches_model_info(sleeps: list[float]) -> None:
    loader = BlockingLoader()
    server, counter = served(None, loader=loader)
    try:

        def release_after_two(delay: float) -> None:
            sleeps.append(delay)
            if len(sleeps) == 2:
                loader.release()
                server.wait_ready(60)

        with capture_logs() as logs, ForecasterClient(url=server.endpoint.url, sleep=release_after_two) as client:
            assert client.probe() == "loading"
            info = client.wait_ready(30)
            assert info["model_config"]["d_model"] == 32  # type: ignore[index]
            assert client.model_info() == info
    finally:
        server.stop()
    assert counter.counts["/v1/model"] == 1
    assert sleeps[:2] == [0.2, 0.4]
    # Only the client's own events: the server in this process logs `forecaster.ready` from its
    # supervisor loop (up to 50 ms after the model is ready), which may come after the client connected.
    events = [e["event"] for e in logs if e["event"] in {"forecaster.waiting", "forecaster.connected"}]
    assert "forecaster.waiting" in events and events[-1] == "forecaster.connected"


def test_loading_service_is_retried_as_503_then_unavailable(sleeps: list[float]) -> None:
    loader = BlockingLoader()
    server, counter = served(None, loader=loader)
    try:
        with (
            make_client(server, sleeps, max_attempts=2) as client,
            pytest.raises(ForecasterUnavailable, match="HTTP 503: model not loaded"),
        ):
            client.forecast([make_series()], SamplingParams())
    finally:
        loader.release()
        server.stop()
    assert counter.counts["/v1/forecast"] == 2
    assert sleeps == [2.0]  # the service's Retry-After wins over a shorter backoff


def test_constructor_rejects_ambiguous_targets() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ForecasterClient(socket_path="/tmp/x.sock", url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="exactly one"):
        ForecasterClient()


class RenamedModel(InstrumentedForecaster):
    """The tiny model under another identity, as after a restart with a different checkpoint."""

    def model_info(self) -> dict[str, object]:
        return {**self.inner.model_info(), "model": {"source": "another/model", "revision": "abc"}}


def test_cached_model_info_is_refreshed_when_the_service_changes_model() -> None:
    path = short_socket_path()
    first = BackgroundServer(create_app(tiny_model, limits=ServiceLimits()), socket_path=path).start()
    client = ForecasterClient(socket_path=path, backoff_seconds=0.01)
    try:
        first.wait_ready(60)
        assert client.model_info()["model"]["source"].endswith("kronos_tiny/model")  # type: ignore[index]
        client.forecast([make_series()], SamplingParams(seed=1))  # same model: cache kept
        first.stop()
        second = BackgroundServer(
            create_app(lambda: RenamedModel(tiny_model()), limits=ServiceLimits()), socket_path=path
        ).start()
        try:
            second.wait_ready(60)
            with capture_logs() as logs:
                client.forecast([make_series()], SamplingParams(seed=1))
            assert sum(e["event"] == "forecaster.model_changed" for e in logs) == 1
            assert client.model_info()["model"] == {"source": "another/model", "revision": "abc"}
        finally:
            second.stop()
    finally:
        client.close()
