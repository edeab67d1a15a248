"""The trader's handle on a Forecaster that may not exist yet, or may go away and come back.

`make_forecaster` can fail (service down, weights not downloadable, model still loading). The trader must
not die for that: exits keep running and entries pause (Kronos gate UNAVAILABLE). This handle obtains the
forecaster lazily, retries at most every `retry_seconds`, and reports its state to the DegradedTracker so
the outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from kronos_bot.forecast_types import (
    Forecaster,
    ForecasterUnavailable,
    SamplingParams,
    SeriesForecast,
    SeriesInput,
)
from kronos_bot.trader.health import DegradedTracker

COMPONENT = "forecaster"
# Said with a forecaster outage whose reason brings no fix of its own (a model load failure does).
FORECASTER_FIX = (
    "systemctl status kronos-forecaster (or start `kronos-bot forecaster`); with forecaster.mode inprocess "
    "the model loads in the trader instead; entries pause, exits keep running"
)


def report_forecaster_down(health: DegradedTracker, error: str) -> None:
    health.set(COMPONENT, error, **({} if "fix:" in error else {"fix": FORECASTER_FIX}))


class ForecasterHandle:
    """Implements the Forecaster protocol over a lazily built (and re-buildable) forecaster."""

    def __init__(
        self,
        factory: Callable[[], Forecaster],
        *,
        health: DegradedTracker,
        retry_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._health = health
        self._retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._forecaster: Forecaster | None = None
        self._last_attempt: float | None = None
        self._last_error = ""
        self._lock = threading.Lock()

    @property
    def last_error(self) -> str:
        return self._last_error

    def get(self) -> Forecaster:
        """The forecaster, building it if due; raises ForecasterUnavailable while it cannot be had."""
        with self._lock:
            if self._forecaster is not None:
                return self._forecaster
            now = self._monotonic()
            if self._last_attempt is not None and now - self._last_attempt < self._retry_seconds:
                raise ForecasterUnavailable(self._last_error or "forecaster not available yet")
            self._last_attempt = now
            try:
                self._forecaster = self._factory()
                if hasattr(self._forecaster, "repeats"):
                    # Retries inside an outage that is already logged go to debug (counted in degraded.end).
                    self._forecaster.repeats = lambda event: self._health.repeat(COMPONENT, event)
            except ForecasterUnavailable as exc:
                self._fail(str(exc))
                raise
            except Exception as exc:  # a model that cannot load is an outage of the gate, not of the daemon
                self._fail(f"{type(exc).__name__}: {exc}")
                raise ForecasterUnavailable(self._last_error) from exc
            return self._forecaster

    def _fail(self, error: str) -> None:
        self._last_error = error
        report_forecaster_down(self._health, error)

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        forecaster = self.get()
        try:
            result = forecaster.forecast(series, params)
        except ForecasterUnavailable as exc:  # a bad series (ForecastInputError) is not an outage: it propagates
            self._last_error = str(exc)
            report_forecaster_down(self._health, str(exc))
            raise
        self._health.clear(COMPONENT)
        return result

    def model_info(self) -> dict[str, object]:
        return self.get().model_info()

    def attached_model_info(self) -> dict[str, object] | None:
        """model_info() of an already attached forecaster, else None (never triggers a load or a wait)."""
        if self._forecaster is None:
            return None
        try:
            return self._forecaster.model_info()
        except Exception:
            return None

    def close(self) -> None:
        closer = getattr(self._forecaster, "close", None)
        if callable(closer):
            closer()
