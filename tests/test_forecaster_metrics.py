"""The forecaster's /metrics: what it counts (401s and 413s of the ASGI wrappers too), its token, its format.

Real HTTP through a BackgroundServer with the tiny Kronos; the exposition is read back with
prometheus_client's own parser, so a test passes only if a Prometheus server could scrape the answer.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kronos_bot.forecast_types import Forecaster, SamplingParams, SeriesForecast, SeriesInput
from kronos_bot.forecaster.metrics import ForecasterMetrics
from kronos_bot.forecaster.schemas import request_payload
from kronos_bot.forecaster.server import BackgroundServer
from kronos_bot.forecaster.service import ServiceLimits, create_app
from tests.forecaster_support import (
    TOKEN,
    BlockingLoader,
    http_client,
    make_series,
    short_socket_path,
    tiny_model,
)

LIMITS = ServiceLimits(max_context=512, min_context_bars=16, max_request_cells=1000)
NAMES = {
    "kronos_forecaster_requests_total",
    "kronos_forecaster_forecast_seconds_count",
    "kronos_forecaster_queue_depth",
    "kronos_forecaster_rejected_total",
    "kronos_forecaster_model_info",
    "kronos_forecaster_ready",
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def body_for(series: list[SeriesInput], **params: Any) -> dict[str, Any]:
    return request_payload(series, SamplingParams(**{"seed": 1, **params}))


def scrape(http: httpx.Client) -> Samples:
    """GET /metrics, checked to be Prometheus text 0.0.4, as {(sample name, labels): value}."""
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labels_of(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


def names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class GatedForecaster:
    """The tiny model, its runs held until `release()`: keeps a forecast running while a test scrapes."""

    def __init__(self, inner: Forecaster) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.started = threading.Event()

    def release(self) -> None:
        self.gate.set()

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        self.started.set()
        if not self.gate.wait(30):
            raise TimeoutError("test never released the forecast")
        return self.inner.forecast(series, params)

    def model_info(self) -> dict[str, object]:
        return self.inner.model_info()


@pytest.fixture
def uds_server() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(tiny_model, limits=LIMITS), socket_path=short_socket_path()) as server:
        server.wait_ready(60)
        yield server


def test_metrics_count_requests_forecasts_and_rejections(uds_server: BackgroundServer) -> None:
    nan_close = replace(make_series("SOL/USD"), close=[math.nan] * 60)
    with http_client(uds_server.endpoint) as http:
        assert http.post("/v1/forecast", json=body_for([make_series()])).status_code == 200
        too_many_cells = body_for([make_series(f"S{i}") for i in range(4)], samples=8)
        assert http.post("/v1/forecast", json=too_many_cells).status_code == 413
        oversized = "x" * (LIMITS.max_body_bytes + 1)  # refused by BodySizeLimit, before FastAPI sees it
        assert http.post("/v1/forecast", content=oversized).status_code == 413
        nan_body = json.dumps(body_for([nan_close]))  # json.dumps writes NaN, which the service refuses
        invalid = http.post("/v1/forecast", content=nan_body, headers={"Content-Type": "application/json"})
        assert invalid.status_code == 422
        assert http.get("/healthz").status_code == 200
        assert http.get("/no/such/path").status_code == 404
        first = scrape(http)
        second = scrape(http)

    assert names(first) >= NAMES
    requests = {
        (labels["endpoint"], labels["status"]): first[("kronos_forecaster_requests_total", frozenset(labels.items()))]
        for labels in labels_of(first, "kronos_forecaster_requests_total")
    }
    assert requests == {
        ("/v1/forecast", "200"): 1,
        ("/v1/forecast", "413"): 2,
        ("/v1/forecast", "422"): 1,
        ("/healthz", "200"): 1,
        ("other", "404"): 1,
    }
    # A scrape is counted once answered, so the next scrape shows it.
    assert value(second, "kronos_forecaster_requests_total", endpoint="/metrics", status="200") == 1
    assert value(first, "kronos_forecaster_forecast_seconds_count") == 1
    assert value(first, "kronos_forecaster_forecast_seconds_sum") > 0
    assert value(first, "kronos_forecaster_rejected_total", status="413") == 2
    assert value(first, "kronos_forecaster_rejected_total", status="422") == 1
    assert value(first, "kronos_forecaster_rejected_total", status="401") == 0
    assert value(first, "kronos_forecaster_ready") == 1
    assert value(first, "kronos_forecaster_queue_depth") == 0
    [info] = labels_of(first, "kronos_forecaster_model_info")
    assert info["model"].endswith("kronos_tiny/model") and info["tokenizer"].endswith("kronos_tiny/tokenizer")
    assert info["device"] == "cpu" and info["threads"] == "1" and info["max_context"] == "512"
    assert info["fingerprint"] == uds_server.service.fingerprint
    assert {"model_revision", "tokenizer_revision", "backend", "sampling_scheme"} <= set(info)


def test_metrics_need_the_bearer_token_like_the_api() -> None:
    with BackgroundServer(create_app(tiny_model, limits=LIMITS, token=TOKEN), host="127.0.0.1") as server:
        server.wait_ready(60)
        with http_client(server.endpoint) as anonymous:
            refused = anonymous.get("/metrics")
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
            assert anonymous.get("/healthz").status_code == 200
        with http_client(server.endpoint, token="wrong-token") as wrong:
            assert wrong.get("/metrics").status_code == 401
        with http_client(server.endpoint, token=TOKEN) as right:
            samples = scrape(right)
    assert value(samples, "kronos_forecaster_requests_total", endpoint="/metrics", status="401") == 2
    assert value(samples, "kronos_forecaster_rejected_total", status="401") == 2
    assert value(samples, "kronos_forecaster_requests_total", endpoint="/healthz", status="200") == 1


def test_metrics_answer_while_a_forecast_runs_and_show_the_queue() -> None:
    model = GatedForecaster(tiny_model())
    with BackgroundServer(create_app(lambda: model, limits=LIMITS), host="127.0.0.1") as server:
        server.wait_ready(60)
        service = server.service
        with ThreadPoolExecutor(2) as pool, http_client(server.endpoint) as http:
            try:
                running = pool.submit(http.post, "/v1/forecast", json=body_for([make_series("A")]))
                assert model.started.wait(10)
                queued = pool.submit(http.post, "/v1/forecast", json=body_for([make_series("B")]))
                wait_until(lambda: service.waiting == 1)
                during = scrape(http)  # answers although the worker thread is held inside the model
            finally:
                model.release()
            assert running.result(30).status_code == 200 and queued.result(30).status_code == 200
            after = scrape(http)
    assert value(during, "kronos_forecaster_queue_depth") == 1
    assert value(during, "kronos_forecaster_forecast_seconds_count") == 0
    assert value(after, "kronos_forecaster_queue_depth") == 0
    assert value(after, "kronos_forecaster_forecast_seconds_count") == 2


def test_metrics_answer_while_the_model_loads() -> None:
    loader = BlockingLoader()
    with (
        BackgroundServer(create_app(loader, limits=LIMITS), host="127.0.0.1") as server,
        http_client(server.endpoint) as http,
    ):
        try:
            loading = scrape(http)
            assert http.post("/v1/forecast", json=body_for([make_series()])).status_code == 503
            assert http.get("/readyz").status_code == 503
            not_ready = scrape(http)
        finally:
            loader.release()
        server.wait_ready(60)
        ready = scrape(http)
    assert names(loading) >= NAMES - {"kronos_forecaster_requests_total"}
    assert value(loading, "kronos_forecaster_ready") == 0
    assert labels_of(loading, "kronos_forecaster_model_info") == [{}]
    # The forecast's 503 is a refusal; /readyz's 503 is its answer ("loading"), not a refused request.
    assert value(not_ready, "kronos_forecaster_rejected_total", status="503") == 1
    assert value(not_ready, "kronos_forecaster_requests_total", endpoint="/readyz", status="503") == 1
    assert value(ready, "kronos_forecaster_ready") == 1
    assert labels_of(ready, "kronos_forecaster_model_info")[0]["model"].endswith("kronos_tiny/model")


def test_each_app_has_its_own_registry_and_none_uses_the_global_one() -> None:
    first = ForecasterMetrics(queue_depth=lambda: 0, ready=lambda: False)
    second = ForecasterMetrics(queue_depth=lambda: 3, ready=lambda: True)
    first.count_request("/healthz", 200)
    texts = [m.render()[0].decode() for m in (first, second)]
    assert 'kronos_forecaster_requests_total{endpoint="/healthz",status="200"} 1.0' in texts[0]
    assert "kronos_forecaster_requests_total{" not in texts[1]
    assert "kronos_forecaster_queue_depth 3.0" in texts[1] and "kronos_forecaster_ready 1.0" in texts[1]
    assert "kronos_forecaster" not in prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()


def test_model_info_keeps_only_public_string_labels_and_openmetrics_is_negotiated() -> None:
    metrics = ForecasterMetrics(queue_depth=lambda: 0, ready=lambda: True)
    metrics.set_model(
        {"model": "some/model-id", "tokenizer": {"source": "x" * 500, "revision": "abc"}, "threads": 2, "token": "s"},
        "f" * 16,
    )
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")
    families = text_string_to_metric_families(metrics.render()[0].decode())
    [labels] = [f.samples[0].labels for f in families if f.name == "kronos_forecaster_model_info"]
    assert labels["model"] == "some/model-id" and labels["model_revision"] == ""
    assert labels["tokenizer_revision"] == "abc" and len(labels["tokenizer"]) == 200
    assert labels["threads"] == "2" and "token" not in labels
