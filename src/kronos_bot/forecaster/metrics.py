"""The forecaster's Prometheus metrics, in a registry of their own.

Why this shape:
- Each app owns its `CollectorRegistry`: prometheus_client's global default registry refuses a second
  metric of the same name, so two apps in one process (tests, benchmarks) would collide, and a scrape of
  one app would show another's counts.
- Queue depth and readiness are read from the service when scraped (`Gauge.set_function`), not mirrored
  on every change, so they cannot drift from the numbers the service actually acts on.
- Labels are bounded: the endpoint is a known route path or "other" (a scanner probing random paths must
  not grow the registry), and the model's info keeps a fixed set of keys, as strings, clipped; nothing
  the client sent and nothing secret ever becomes a label.
- The exposition is prometheus_client's, negotiated from the scraper's Accept header the way its own
  handlers do: plain text 0.0.4 unless the scraper asks for OpenMetrics or text 1.0.0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder

# Fast tiny models answer in tens of milliseconds, Kronos-base on 2 CPU cores with many samples in tens of seconds.
FORECAST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# Answers that mean "the service refused this request" (auth, size, content, busy or not loaded).
REJECTION_STATUSES = frozenset({401, 413, 422, 503})
# Endpoints whose status codes are answers, not refusals (a 503 from /readyz says "loading").
NOT_REFUSING = frozenset({"/readyz"})
OTHER_ENDPOINT = "other"
# Longest label value kept from model_info (a local checkpoint path can be long).
MAX_LABEL_CHARS = 200


class ForecasterMetrics:
    """Every metric of one forecaster app, and the rendering of its /metrics answer."""

    def __init__(
        self,
        *,
        queue_depth: Callable[[], float],
        ready: Callable[[], bool],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kronos_forecaster_requests_total",
            "HTTP requests answered, by route path ('other' for unknown paths) and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.forecast_seconds = Histogram(
            "kronos_forecaster_forecast_seconds",
            "Seconds the model computed one served forecast request (the queue wait excluded).",
            buckets=FORECAST_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "kronos_forecaster_queue_depth",
            "Forecast requests waiting behind the one the model is running.",
            registry=self.registry,
        )
        self.queue_depth.set_function(queue_depth)
        self.rejected = Counter(
            "kronos_forecaster_rejected_total",
            "Requests refused by the service's checks: 401 token, 413 size, 422 content, 503 busy or not loaded.",
            ["status"],
            registry=self.registry,
        )
        for status in sorted(REJECTION_STATUSES):
            # Present at 0 from the start, so rate() and alerts see the series before the first refusal.
            self.rejected.labels(status=str(status))
        self.model = Info(
            "kronos_forecaster_model",
            "The loaded model: checkpoint ids and revisions, device, threads, effective context limit.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "kronos_forecaster_ready",
            "1 once the model is loaded and forecasts are served, 0 while loading or after a failed load.",
            registry=self.registry,
        )
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)

    def count_request(self, endpoint: str, status: int) -> None:
        """One answered request (`endpoint`: a route path or OTHER_ENDPOINT); a refusal counts in `rejected` too."""
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        if status in REJECTION_STATUSES and endpoint not in NOT_REFUSING:
            self.rejected.labels(status=str(status)).inc()

    def observe_forecast(self, seconds: float) -> None:
        self.forecast_seconds.observe(seconds)

    def set_model(self, info: Mapping[str, object], fingerprint: str) -> None:
        """Publish the loaded model (its public_info) once; only the keys below, so no config dump or path."""
        labels = {
            "backend": info.get("backend"),
            **_checkpoint_labels("model", info.get("model")),
            **_checkpoint_labels("tokenizer", info.get("tokenizer")),
            "device": info.get("device"),
            "threads": info.get("threads"),
            "max_context": info.get("max_context"),
            "sampling_scheme": info.get("sampling_scheme"),
            "fingerprint": fingerprint,
        }
        self.model.info({key: _label_value(value) for key, value in labels.items()})

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition body and its content type, in the format the scraper's Accept header asks for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _checkpoint_labels(name: str, checkpoint: object) -> dict[str, object]:
    """`<name>` and `<name>_revision` of a checkpoint entry (a {"source", "revision"} dict, or a plain id)."""
    if isinstance(checkpoint, Mapping):
        return {name: checkpoint.get("source"), f"{name}_revision": checkpoint.get("revision")}
    return {name: checkpoint, f"{name}_revision": None}


def _label_value(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


__all__ = ["FORECAST_BUCKETS", "OTHER_ENDPOINT", "REJECTION_STATUSES", "ForecasterMetrics"]
