"""make_forecaster: service client, in-process model, and the auto fallback with its warning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kronos_bot.forecast_types import Forecaster, ForecasterUnavailable, SamplingParams
from kronos_bot.forecaster.client import ForecasterClient
from kronos_bot.forecaster.factory import SerializedForecaster, load_model, make_forecaster
from kronos_bot.forecaster.server import BackgroundServer
from kronos_bot.forecaster.service import ServiceLimits, create_app
from tests.forecaster_support import (
    TINY_MODEL,
    TINY_TOKENIZER,
    forecasts_equal,
    make_series,
    short_socket_path,
    tiny_model,
    tiny_settings,
)


@pytest.fixture
def missing_socket() -> str:
    path = short_socket_path()
    yield path  # type: ignore[misc]
    shutil.rmtree(Path(path).parent, ignore_errors=True)


def test_service_mode_with_nothing_listening_is_an_error(missing_socket: str) -> None:
    settings = tiny_settings(mode="service", socket_path=missing_socket, ready_timeout_seconds=0.3)
    with capture_logs() as logs, pytest.raises(ForecasterUnavailable, match="is kronos-forecaster.service running"):
        make_forecaster(settings)
    assert not any(e["event"] == "forecaster.inprocess_fallback" for e in logs)


def test_service_mode_without_waiting_returns_the_client_at_once(missing_socket: str) -> None:
    settings = tiny_settings(mode="service", socket_path=missing_socket)
    forecaster = make_forecaster(settings, wait_ready=False)
    assert isinstance(forecaster, ForecasterClient)
    with pytest.raises(ForecasterUnavailable):
        forecaster.forecast([make_series()], SamplingParams())


def test_service_mode_uses_a_running_service() -> None:
    path = short_socket_path()
    with BackgroundServer(create_app(tiny_model, limits=ServiceLimits()), socket_path=path) as server:
        settings = tiny_settings(mode="service", socket_path=path, ready_timeout_seconds=30)
        forecaster = make_forecaster(settings)
        assert isinstance(forecaster, ForecasterClient)
        assert server.service.state == "ready"
        params = SamplingParams(samples=2, seed=5)
        expected = tiny_model().forecast([make_series()], params)
        assert forecasts_equal(forecaster.forecast([make_series()], params), expected)
    shutil.rmtree(Path(path).parent, ignore_errors=True)


def test_auto_uses_the_service_when_it_answers() -> None:
    path = short_socket_path()
    with BackgroundServer(create_app(tiny_model, limits=ServiceLimits()), socket_path=path):
        with capture_logs() as logs:
            forecaster = make_forecaster(tiny_settings(mode="auto", socket_path=path))
        assert isinstance(forecaster, ForecasterClient)
        assert not any(e["event"] == "forecaster.inprocess_fallback" for e in logs)
    shutil.rmtree(Path(path).parent, ignore_errors=True)


def test_auto_falls_back_to_in_process_with_a_warning(missing_socket: str) -> None:
    with capture_logs() as logs:
        forecaster = make_forecaster(tiny_settings(mode="auto", socket_path=missing_socket))
    assert isinstance(forecaster, SerializedForecaster)
    fallback = [e for e in logs if e["event"] == "forecaster.inprocess_fallback"]
    assert len(fallback) == 1 and fallback[0]["log_level"] == "warning"
    assert fallback[0]["endpoint"] == f"unix:{missing_socket}"
    params = SamplingParams(samples=3, seed=2)
    assert forecasts_equal(forecaster.forecast([make_series()], params), tiny_model().forecast([make_series()], params))


def test_auto_with_an_unanswering_url_also_falls_back() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with capture_logs() as logs:
        forecaster = make_forecaster(tiny_settings(mode="auto", url=f"http://127.0.0.1:{port}"))
    assert isinstance(forecaster, SerializedForecaster)
    assert [e["endpoint"] for e in logs if e["event"] == "forecaster.inprocess_fallback"] == [f"http://127.0.0.1:{port}"]


def test_inprocess_mode_loads_here_and_implements_the_protocol() -> None:
    with capture_logs() as logs:
        forecaster = make_forecaster(tiny_settings(mode="inprocess"))
    assert isinstance(forecaster, SerializedForecaster) and isinstance(forecaster, Forecaster)
    loaded = [e for e in logs if e["event"] == "forecaster.inprocess_loaded"]
    assert loaded and loaded[0]["model"]["source"] == str(TINY_MODEL)


def test_model_override_drops_the_configured_revisions(monkeypatch: pytest.MonkeyPatch) -> None:
    import kronos_bot.kronos.predictor as predictor

    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
    monkeypatch.setattr(predictor, "load_forecaster", lambda *a, **k: calls.append((a, k)) or "loaded")
    from kronos_bot.config import Settings

    settings = Settings()  # the pinned Kronos-small defaults
    load_model(settings)
    load_model(settings, model=str(TINY_MODEL), tokenizer=str(TINY_TOKENIZER), verify=False, threads=1)
    (args0, kw0), (args1, kw1) = calls
    assert args0 == ("NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base")
    assert kw0["model_revision"] == settings.forecaster.model_revision and kw0["verify"] is True
    assert kw0["min_context_bars"] == settings.forecaster.min_context_bars
    assert args1 == (str(TINY_MODEL), str(TINY_TOKENIZER))
    assert kw1["model_revision"] is None and kw1["tokenizer_revision"] is None
    assert kw1["verify"] is False and kw1["threads"] == 1
