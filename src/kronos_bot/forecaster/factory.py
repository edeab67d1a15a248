"""How any part of the bot obtains a Forecaster: the service's client, or the model in this process.

Torch-free at import. `forecaster.mode` decides:
- `service` (what the systemd unit sets): the HTTP client only. A missing forecaster is an error
  (`ForecasterUnavailable`), never a silent torch import and 115 MB of weights in the trader;
- `inprocess`: load the model here (one-off commands, tests, backtests);
- `auto` (a newcomer's default): use the service when its socket/URL answers, otherwise load the model in
  this process and say so with a `forecaster.inprocess_fallback` warning. A service that answers but is
  still loading is waited for rather than duplicated (two copies of the model on a small box is worse).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kronos_bot.forecast_types import Forecaster, SamplingParams, SeriesForecast, SeriesInput
from kronos_bot.forecaster.client import ForecasterClient
from kronos_bot.logs import get_logger


class SerializedForecaster:
    """Wraps an in-process model so that two threads never run it at once (as the service guarantees)."""

    def __init__(self, inner: Forecaster) -> None:
        self.inner = inner
        self._lock = threading.Lock()

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        with self._lock:
            return self.inner.forecast(series, params)

    def model_info(self) -> dict[str, object]:
        return self.inner.model_info()

    def __repr__(self) -> str:
        return f"SerializedForecaster({self.inner!r})"


class LazyForecaster:
    """A forecaster whose checkpoints are resolved and verified now, but built (torch imported, weights
    loaded) only on the first forecast.

    Why: its `model_info()` -- the key of every forecast cache -- is known from the verified files, so a
    backtest or evaluation whose forecasts are all cached never pays for torch and the model. The built
    model's own `model_info()` must give the same fingerprint, else the cache would be keyed by a model
    other than the one computing it: that refuses to forecast (RuntimeError naming both).
    """

    def __init__(self, identity: dict[str, object], build: Callable[[], Forecaster]) -> None:
        self._identity = identity
        self._build = build
        self._inner: Forecaster | None = None

    @property
    def built(self) -> bool:
        return self._inner is not None

    def model_info(self) -> dict[str, object]:
        return self._inner.model_info() if self._inner is not None else dict(self._identity)

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        if self._inner is None:
            inner = self._build()
            from kronos_bot.gates.forecast_cache import model_fingerprint

            expected, actual = model_fingerprint(self._identity), model_fingerprint(inner.model_info())
            if expected != actual:
                raise RuntimeError(
                    f"the loaded model's fingerprint {actual} differs from {expected}, the one its "
                    f"checkpoint files promised (device or thread setting not what torch reports?)"
                )
            self._inner = inner
        return self._inner.forecast(series, params)

    def __repr__(self) -> str:
        return f"LazyForecaster(built={self.built})"


def load_model(
    settings: Any,
    *,
    model: str | None = None,
    tokenizer: str | None = None,
    verify: bool | None = None,
    device: str | None = None,
    threads: int | None = None,
    lazy: bool = False,
) -> Forecaster:
    """Load tokenizer + predictor as the `forecaster` config says (imports torch unless `lazy`).

    An overriding `model` drops the configured revision (it pins the configured repo, not the other
    one; known repos still get their pinned revision from the Kronos package) and, unless `tokenizer`
    is given too, takes the tokenizer that model is known to pair with, else the configured one.
    `lazy`: resolve and verify the files now, build the model on the first forecast (`LazyForecaster`).
    """
    from kronos_bot.kronos.hub import paired_tokenizer
    from kronos_bot.kronos.identity import resolve_checkpoints

    fs = settings.forecaster
    model_id = model or fs.model
    model_revision = fs.model_revision if model_id == fs.model else None
    if tokenizer:
        tokenizer_id = tokenizer
    elif model_id != fs.model:
        tokenizer_id = paired_tokenizer(model_id) or fs.tokenizer
    else:
        tokenizer_id = fs.tokenizer
    tokenizer_revision = fs.tokenizer_revision if tokenizer_id == fs.tokenizer else None
    resolved = resolve_checkpoints(
        model_id,
        tokenizer_id,
        model_revision=model_revision,
        tokenizer_revision=tokenizer_revision,
        cache_dir=fs.hf_cache_dir,
        verify=fs.verify_sha256 if verify is None else verify,
    )
    build_device, build_threads = device or fs.device, threads or fs.threads

    def build() -> Forecaster:
        from kronos_bot.kronos.predictor import build_forecaster

        return build_forecaster(
            resolved, device=build_device, threads=build_threads, min_context_bars=fs.min_context_bars
        )

    if lazy:
        return LazyForecaster(resolved.identity(build_device, build_threads), build)
    return build()


def load_inprocess(settings: Any, log: Any = None, **overrides: Any) -> Forecaster:
    """The model in this process, behind a lock; logs what was loaded and how long it took."""
    log = log or get_logger("kronos_bot.forecaster")
    start = time.monotonic()
    forecaster = SerializedForecaster(load_model(settings, **overrides))
    info = forecaster.model_info()
    log.info(
        "forecaster.inprocess_loaded",
        load_seconds=round(time.monotonic() - start, 3),
        model=info.get("model"),
        tokenizer=info.get("tokenizer"),
        device=info.get("device"),
        threads=info.get("threads"),
    )
    return forecaster


def make_forecaster(settings: Any, log: Any = None, *, wait_ready: bool = True) -> Forecaster:
    """The Forecaster the config asks for (see the module docstring for the three modes).

    `wait_ready` (service mode): wait up to `forecaster.ready_timeout_seconds` for the service and raise
    ForecasterUnavailable if it does not come; pass False to get the client at once and let each
    forecast call fail (ForecasterUnavailable) until the service is up, e.g. so that a trader can
    keep managing exits while the forecaster is down.
    """
    log = log or get_logger("kronos_bot.forecaster")
    fs = settings.forecaster
    if fs.mode == "inprocess":
        return load_inprocess(settings, log)
    client = ForecasterClient.from_settings(settings, log)
    try:
        if fs.mode == "service":
            if wait_ready:
                client.wait_ready(fs.ready_timeout_seconds)
            return client
        state = client.probe()
        if state == "down":
            client.close()
            log.warning(
                "forecaster.inprocess_fallback",
                endpoint=client.endpoint,
                error=client.last_probe_error,
                reason="no forecaster service answers; loading the model in this process (slow start, more "
                "memory). Start `kronos-bot forecaster` or set forecaster.mode to silence this.",
            )
            return load_inprocess(settings, log)
        client.wait_ready(fs.ready_timeout_seconds)
        return client
    except BaseException:
        client.close()
        raise
