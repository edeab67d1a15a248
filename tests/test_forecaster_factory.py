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
    with capture_logs() as logs, pytest.raises(ForecasterUnavailable, match=r"is kronos-forecaster\.service running"):
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
    assert [e["endpoint"] for e in logs if e["event"] == "forecaster.inprocess_fallback"] == [
        f"http://127.0.0.1:{port}"
    ]


def test_inprocess_mode_loads_here_and_implements_the_protocol() -> None:
    with capture_logs() as logs:
        forecaster = make_forecaster(tiny_settings(mode="inprocess"))
    assert isinstance(forecaster, SerializedForecaster) and isinstance(forecaster, Forecaster)
    loaded = [e for e in logs if e["event"] == "forecaster.inprocess_loaded"]
    assert loaded and loaded[0]["model"]["source"] == str(TINY_MODEL)


def test_model_override_drops_the_configured_revisions(monkeypatch: pytest.MonkeyPatch) -> None:
    import kronos_bot.kronos.identity as identity
    import kronos_bot.kronos.predictor as predictor

    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
    builds: list[dict[str, object]] = []
    monkeypatch.setattr(identity, "resolve_checkpoints", lambda *a, **k: calls.append((a, k)) or "resolved")
    monkeypatch.setattr(predictor, "build_forecaster", lambda resolved, **k: builds.append({"resolved": resolved, **k}))
    from kronos_bot.config import Settings

    settings = Settings()  # the pinned Kronos-small defaults
    load_model(settings)
    load_model(settings, model=str(TINY_MODEL), tokenizer=str(TINY_TOKENIZER), verify=False, threads=1)
    (args0, kw0), (args1, kw1) = calls
    assert args0 == ("NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base")
    assert kw0["model_revision"] == settings.forecaster.model_revision and kw0["verify"] is True
    assert builds[0]["min_context_bars"] == settings.forecaster.min_context_bars
    assert builds[0]["threads"] == settings.forecaster.threads and builds[0]["resolved"] == "resolved"
    assert args1 == (str(TINY_MODEL), str(TINY_TOKENIZER))
    assert kw1["model_revision"] is None and kw1["tokenizer_revision"] is None
    assert kw1["verify"] is False and builds[1]["threads"] == 1


# ----- lazy loading (backtests whose forecasts are all cached) -----


def test_lazy_model_knows_its_fingerprint_before_building_and_forecasts_like_the_eager_one() -> None:
    from kronos_bot.forecaster.factory import LazyForecaster
    from kronos_bot.gates.forecast_cache import model_fingerprint

    settings = tiny_settings(mode="inprocess", threads=1)
    lazy = load_model(settings, lazy=True)
    assert isinstance(lazy, LazyForecaster) and not lazy.built
    promised = lazy.model_info()
    eager = load_model(settings)
    assert model_fingerprint(promised) == model_fingerprint(eager.model_info())
    assert promised["model"] == eager.model_info()["model"]  # type: ignore[index]

    params = SamplingParams(pred_len=3, samples=2, seed=5)
    series = [make_series("BTC/USD")]
    assert forecasts_equal(lazy.forecast(series, params), eager.forecast(series, params))
    assert lazy.built and model_fingerprint(lazy.model_info()) == model_fingerprint(promised)


def test_lazy_model_refuses_to_forecast_when_the_built_model_is_not_the_promised_one() -> None:
    from kronos_bot.forecaster.factory import LazyForecaster

    real = tiny_model()
    promised = {**real.model_info(), "threads": 97}  # not what torch will report
    lazy = LazyForecaster(promised, lambda: real)
    with pytest.raises(RuntimeError, match="fingerprint"):
        lazy.forecast([make_series("BTC/USD")], SamplingParams(pred_len=2, samples=1, seed=1))
    assert not lazy.built


def test_lazy_model_resolves_and_verifies_files_at_once(tmp_path: Path) -> None:
    from kronos_bot.kronos.hub import ModelLoadError

    settings = tiny_settings(mode="inprocess", model=str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError):
        load_model(settings, lazy=True)


def test_lazy_model_info_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tests.forecaster_support import tiny_settings\n"
        "from kronos_bot.forecaster.factory import load_model\n"
        "info = load_model(tiny_settings(mode='inprocess'), lazy=True).model_info()\n"
        "assert info['model_config'] and info['threads'] == 1, info\n"
        "print('torch' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
