"""The forecaster service over real uvicorn with the tiny Kronos: Unix socket and 127.0.0.1 TCP."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from kronos_bot.forecast_types import SamplingParams, SeriesInput
from kronos_bot.forecaster.client import ForecasterAuthError, ForecasterClient
from kronos_bot.forecaster.schemas import request_payload
from kronos_bot.forecaster.server import BackgroundServer, Endpoint
from kronos_bot.forecaster.service import ServiceLimits, create_app
from tests.forecaster_support import (
    TOKEN,
    BlockingLoader,
    InstrumentedForecaster,
    forecasts_equal,
    make_series,
    short_socket_path,
    synthetic_series,
    tiny_model,
)

LIMITS = ServiceLimits(max_context=512, min_context_bars=16, max_request_cells=4 * 64 * 512)


def raw_http(endpoint: Endpoint, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if endpoint.socket_path:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=endpoint.socket_path), base_url="http://f", headers=headers, timeout=30
        )
    return httpx.Client(base_url=str(endpoint.url), headers=headers, timeout=30)


def client_for(endpoint: Endpoint, token: str | None = None, **kwargs: Any) -> ForecasterClient:
    kwargs.setdefault("backoff_seconds", 0.01)
    if endpoint.socket_path:
        return ForecasterClient(socket_path=endpoint.socket_path, token=token, **kwargs)
    return ForecasterClient(url=endpoint.url, token=token, **kwargs)


def body_for(series: list[SeriesInput], **params: Any) -> dict[str, Any]:
    return request_payload(series, SamplingParams(**{"seed": 1, **params}))


@pytest.fixture
def uds_server() -> Iterator[BackgroundServer]:
    path = short_socket_path()
    with BackgroundServer(create_app(tiny_model, limits=LIMITS), socket_path=path) as server:
        server.wait_ready(60)
        yield server
    shutil.rmtree(Path(path).parent, ignore_errors=True)


@pytest.fixture
def tcp_server() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(tiny_model, limits=LIMITS, token=TOKEN), host="127.0.0.1", port=0) as server:
        server.wait_ready(60)
        yield server


def test_unix_socket_forecast_matches_in_process(uds_server: BackgroundServer) -> None:
    series = [make_series("BTC/USD"), make_series("LATE", bars=50, offset=10)]
    params = SamplingParams(pred_len=4, samples=8, seed=42)
    with client_for(uds_server.endpoint) as client:
        remote = client.forecast(series, params)
    direct = tiny_model().forecast(series, params)
    assert forecasts_equal(remote, direct)
    first = remote[0]
    assert len(first.candles) == 4 and len(first.path_closes) == 8 and len(first.path_closes[0]) == 4
    assert first.candles[0].timestamp.tzinfo is not None and first.candles[0].timestamp.utcoffset().total_seconds() == 0
    assert set(first.close_quantiles) == {"p10", "p50", "p90"}
    assert 0.0 <= first.p_up <= 1.0 and first.compute_seconds > 0
    assert first.extra["seed"] == 42


def test_unseeded_request_reports_the_seed_it_drew(uds_server: BackgroundServer) -> None:
    series = [make_series()]
    with client_for(uds_server.endpoint) as client:
        first = client.forecast(series, SamplingParams(samples=4))[0]
    seed = first.extra["seed"]
    assert isinstance(seed, int)
    replay = tiny_model().forecast(series, SamplingParams(samples=4, seed=seed))[0]
    assert replay.path_closes == first.path_closes


def test_model_endpoint_reports_ids_hashes_configs_and_limits(uds_server: BackgroundServer) -> None:
    with raw_http(uds_server.endpoint) as http:
        info = http.get("/v1/model").json()
    assert info["model"]["source"].endswith("kronos_tiny/model")
    assert len(info["model"]["weights_sha256"]) == 64 and len(info["tokenizer"]["config_sha256"]) == 64
    assert info["model_config"]["d_model"] == 32 and info["tokenizer_config"]["d_in"] == 6
    assert info["device"] == "cpu" and info["threads"] >= 1
    assert (info["max_context"], info["min_context_bars"], info["max_request_cells"]) == (512, 16, 4 * 64 * 512)
    assert "load_seconds" not in info  # deterministic: callers may hash it into cache keys
    with client_for(uds_server.endpoint) as client:
        health = client.health()
    assert health["state"] == "ready" and health["load_seconds"] >= 0 and health["ready_after_seconds"] >= 0


def test_readiness_before_and_after_the_model_loads() -> None:
    loader = BlockingLoader()
    with (
        BackgroundServer(create_app(loader, limits=LIMITS), host="127.0.0.1") as server,
        raw_http(server.endpoint) as http,
    ):
        assert http.get("/healthz").json()["state"] == "loading"
        not_ready = http.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
        early = http.post("/v1/forecast", json=body_for([make_series()]))
        assert early.status_code == 503 and early.json()["error"] == "not_ready"
        assert http.get("/v1/model").status_code == 503
        loader.release()
        server.wait_ready(60)
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert http.post("/v1/forecast", json=body_for([make_series()])).status_code == 200


def test_failed_load_keeps_readyz_503_and_stops_the_server() -> None:
    loader = BlockingLoader(error=RuntimeError("weights missing"))
    server = BackgroundServer(create_app(loader, limits=LIMITS), host="127.0.0.1").start()
    try:
        with raw_http(server.endpoint) as http:
            loader.release()
            deadline = time.monotonic() + 10
            while server.service.state != "failed" and time.monotonic() < deadline:
                time.sleep(0.01)
            body = http.get("/readyz").json()
        assert body == {"status": "failed", "error": "RuntimeError: weights missing"}
    except httpx.TransportError:
        pass  # the server may already be shutting down: what matters is the exit code below
    finally:
        server._thread.join(10)
        server.stop()
    assert server.exit_code == 1


def _post(server: BackgroundServer, body: dict[str, Any] | str) -> httpx.Response:
    with raw_http(server.endpoint) as http:
        if isinstance(body, str):
            return http.post("/v1/forecast", content=body, headers={"Content-Type": "application/json"})
        return http.post("/v1/forecast", json=body)


def test_nan_is_422_naming_the_series(uds_server: BackgroundServer) -> None:
    bad = make_series("SOL/USD")
    bad = replace(bad, close=[*bad.close[:7], math.nan, *bad.close[8:]])
    body = json.dumps(body_for([make_series("BTC/USD"), bad]))  # json.dumps writes NaN
    response = _post(uds_server, body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "invalid_input"
    assert error["problems"] == [{"series": "SOL/USD", "problem": error["problems"][0]["problem"]}]
    assert "bar 7" in error["problems"][0]["problem"] and "close is nan" in error["problems"][0]["problem"]
    assert "SOL/USD" in error["detail"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: replace(s, high=[*s.high[:3], 1.0, *s.high[4:]]), "high 1.0 < low"),
        (lambda s: replace(s, low=s.low[:-2]), "wrong lengths: 60 timestamps but low has 58"),
        (lambda s: synthetic_series(s.id, 600), "too many bars: 600 > max_context 512"),
        (lambda s: synthetic_series(s.id, 8), "too few bars: 8 < 16"),
    ],
)
def test_invalid_series_is_422_naming_it(uds_server: BackgroundServer, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    response = _post(uds_server, body_for([make_series("ETH/USD"), mutate(make_series("DOGE/USD"))]))
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [p["series"] for p in problems] == ["DOGE/USD"]
    assert expected in problems[0]["problem"]


def test_shape_errors_are_422_naming_the_series(uds_server: BackgroundServer) -> None:
    body = body_for([make_series("BTC/USD"), make_series("ETH/USD")])
    body["series"][1]["close"][3] = None
    body["series"][0]["timestamps"][0] = "2024-06-30T17:00:00"  # no timezone
    response = _post(uds_server, body)
    assert response.status_code == 422
    problems = {p["series"]: p["problem"] for p in response.json()["problems"]}
    assert "timezone" in problems["BTC/USD"] and problems["BTC/USD"].startswith("timestamps[0]")
    assert problems["ETH/USD"].startswith("close[3]")
    bad_params = _post(uds_server, {**body_for([make_series()]), "samples": 0, "top_p": 2})
    assert bad_params.status_code == 422
    assert {p["problem"].split(":")[0] for p in bad_params.json()["problems"]} == {"samples", "top_p"}


def test_request_over_the_cell_limit_is_413() -> None:
    limits = replace(LIMITS, max_request_cells=1000)
    with BackgroundServer(create_app(tiny_model, limits=limits), socket_path=short_socket_path()) as server:
        server.wait_ready(60)
        series = [make_series(f"S{i}", bars=60) for i in range(4)]
        response = _post(server, body_for(series, samples=8))
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
        assert "8 samples x 240 bars = 1920 cells > max_request_cells 1000" in response.json()["detail"]
        assert _post(server, body_for(series[:1], samples=8)).status_code == 200


def test_oversized_body_is_413_before_reading_it() -> None:
    limits = replace(LIMITS, max_request_cells=1)
    with BackgroundServer(create_app(tiny_model, limits=limits), host="127.0.0.1") as server:
        response = _post(server, "x" * (limits.max_body_bytes + 1))
        assert response.status_code == 413


def test_tcp_needs_the_bearer_token(tcp_server: BackgroundServer) -> None:
    body = body_for([make_series()])
    with raw_http(tcp_server.endpoint) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        missing = anonymous.post("/v1/forecast", json=body)
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/v1/model").status_code == 401
    with raw_http(tcp_server.endpoint, token="wrong-token") as wrong:
        assert wrong.post("/v1/forecast", json=body).status_code == 401
    with raw_http(tcp_server.endpoint, token=TOKEN) as right:
        assert right.post("/v1/forecast", json=body).status_code == 200
        assert right.get("/v1/model").status_code == 200
    with (
        client_for(tcp_server.endpoint, token="wrong-token") as client,
        pytest.raises(ForecasterAuthError, match="does not match"),
    ):
        client.forecast([make_series()], SamplingParams(seed=1))
    with client_for(tcp_server.endpoint) as client, pytest.raises(ForecasterAuthError, match="requires a token"):
        client.model_info()
    with client_for(tcp_server.endpoint, token=TOKEN) as client:
        assert client.forecast([make_series()], SamplingParams(seed=1))[0].id == "BTC/USD"


def test_eight_concurrent_requests_run_one_at_a_time_and_are_all_correct() -> None:
    model = InstrumentedForecaster(tiny_model(), delay=0.02)
    with BackgroundServer(create_app(lambda: model, limits=LIMITS), host="127.0.0.1") as server:
        server.wait_ready(60)
        jobs = [
            (
                [make_series(f"S{i}", bars=40 + i, offset=i), make_series("BTC/USD", bars=30, offset=2 * i)],
                SamplingParams(pred_len=2 + i % 3, samples=1 + i, seed=100 + i),
            )
            for i in range(8)
        ]
        with client_for(server.endpoint) as client, ThreadPoolExecutor(8) as pool:
            remote = list(pool.map(lambda job: client.forecast(*job), jobs))
    for (series, params), answer in zip(jobs, remote, strict=True):
        assert forecasts_equal(answer, tiny_model().forecast(series, params))
    assert model.calls == 8
    assert model.max_in_flight == 1


def test_health_answers_while_a_forecast_computes() -> None:
    model = InstrumentedForecaster(tiny_model(), delay=1.0)
    with BackgroundServer(create_app(lambda: model, limits=LIMITS), host="127.0.0.1") as server:
        server.wait_ready(60)
        with client_for(server.endpoint) as client, ThreadPoolExecutor(1) as pool, raw_http(server.endpoint) as http:
            pending = pool.submit(client.forecast, [make_series()], SamplingParams(seed=1))
            while model.in_flight == 0:
                time.sleep(0.005)
            start = time.monotonic()
            assert http.get("/healthz").status_code == 200
            assert time.monotonic() - start < 0.5
            assert model.in_flight == 1
            assert pending.result(10)[0].id == "BTC/USD"
