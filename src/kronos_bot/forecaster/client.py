"""The trader's side of the forecaster: an httpx client that implements the Forecaster protocol.

Torch-free by construction (imports httpx, pydantic and our contract types only), so the trader restarts
in about a second with a small RSS. Failure policy, chosen for a bot that must never hang a cycle:
- connection errors, connect timeouts and 5xx (including 503 "still loading" / "busy") are retried a
  bounded number of times with doubling backoff (the bot's one policy, `kronos_bot.retry`; Retry-After
  wins), then `ForecasterUnavailable`;
- a *read* timeout on POST /v1/forecast is not retried: the service is alive but slow, and a retry
  would queue a second model run behind the first;
- 4xx is never retried: 422 -> `ForecastInputError` naming the series, 401 -> `ForecasterAuthError`,
  anything else (413...) -> `ForecasterRequestError`. Both of the latter are ForecasterUnavailable
  subclasses, so a caller that degrades gracefully on "no forecast" keeps working, while the message
  says exactly what to fix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from kronos_bot import retry
from kronos_bot.forecast_types import (
    ForecasterUnavailable,
    ForecastInputError,
    SamplingParams,
    SeriesForecast,
    SeriesInput,
)
from kronos_bot.forecaster.schemas import (
    ErrorResponse,
    ForecastResponse,
    find_problems,
    request_payload,
    series_forecast,
)
from kronos_bot.logs import get_logger
from kronos_bot.retry import Failure, RetryFailed, RetryPolicy, describe_transport_error, parse_retry_after

# The service's model fingerprint header (see service.MODEL_HEADER; not imported: no FastAPI here).
MODEL_HEADER = "x-kronos-model"
# The host part of URLs sent over a Unix socket; never resolved.
UDS_BASE_URL = "http://forecaster"
CONNECT_TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 10.0


class ForecasterRequestError(ForecasterUnavailable):
    """The service refused the request (4xx other than 422); retrying the same request cannot help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"forecaster refused the request ({status}): {detail}")
        self.status = status
        self.detail = detail


class ForecasterAuthError(ForecasterRequestError):
    """401: the service wants a bearer token and ours is missing or different."""

    def __init__(self, endpoint: str, had_token: bool) -> None:
        hint = (
            "the token in KRONOS_BOT_FORECASTER_TOKEN does not match the service's"
            if had_token
            else "the service requires a token: set KRONOS_BOT_FORECASTER_TOKEN to the service's token"
        )
        super().__init__(401, f"{endpoint}: unauthorized; {hint}")


class ForecasterClient:
    """Forecasts over HTTP from a forecaster service, on a Unix socket or at a URL.

    >>> client = ForecasterClient(socket_path="/run/kronos-bot/forecaster.sock")
    >>> client.wait_ready(timeout=60)              # doctest: +SKIP
    >>> client.forecast([series], SamplingParams(pred_len=4, samples=32, seed=7))  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        log: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (socket_path is None) == (url is None):
            raise ValueError("give exactly one of socket_path or url")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.endpoint = f"unix:{socket_path}" if socket_path else str(url).rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.log = log or get_logger("kronos_bot.forecaster.client")
        self._sleep = sleep
        self._token = token or None
        self._info: dict[str, Any] | None = None
        self._info_fingerprint: str | None = None
        # Why the last probe found nothing (e.g. "PermissionError: ..." when not in the socket's group).
        self.last_probe_error: str | None = None
        # Set by the trader: True when a retry repeats an ongoing outage (then logged at debug, counted).
        self.repeats: Callable[[str], bool] | None = None
        headers = {"Accept": "application/json", "User-Agent": "kronos-bot-forecaster-client"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        # retries=0: the transport's own connect retries would hide attempts from our policy and logs.
        transport = httpx.HTTPTransport(uds=socket_path, retries=0) if socket_path else httpx.HTTPTransport(retries=0)
        self._http = httpx.Client(
            base_url=UDS_BASE_URL if socket_path else str(url).rstrip("/"),
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_SECONDS, timeout)),
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Any, log: Any = None) -> ForecasterClient:
        """From `Settings`: the URL (with the token from the environment) when set, else the socket."""
        fs = settings.forecaster
        token = settings.forecaster_token.get_secret_value() if settings.forecaster_token else None
        return cls(
            socket_path=None if fs.url else fs.socket_path,
            url=fs.url,
            token=token,
            timeout=fs.request_timeout_seconds,
            max_attempts=fs.max_attempts,
            backoff_seconds=fs.backoff_seconds,
            log=log,
        )

    # ----- the Forecaster protocol -----

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        """Forecast every series on the service; raises ForecastInputError or ForecasterUnavailable."""
        if not series:
            return []
        # Checked here too: JSON cannot carry NaN, and a bad series should not cost a round trip.
        problems = find_problems(series)
        if problems:
            raise ForecastInputError(problems[0].series, problems[0].problem)
        body = json.dumps(request_payload(series, params), allow_nan=False, separators=(",", ":"))
        response = self._request("POST", "/v1/forecast", content=body, retry_read_timeout=False)
        fingerprint = response.headers.get(MODEL_HEADER)
        if self._info is not None and fingerprint and fingerprint != self._info_fingerprint:
            # The service restarted with another model or limits: the cached model_info() is stale.
            self.log.warning(
                "forecaster.model_changed", endpoint=self.endpoint, cached=self._info_fingerprint, now=fingerprint
            )
            self._info = None
        try:
            parsed = ForecastResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise ForecasterUnavailable(f"{self.endpoint}: malformed forecast response: {exc}") from exc
        return [series_forecast(item) for item in parsed.series]

    def model_info(self) -> dict[str, object]:
        """The service's /v1/model (ids, revisions, hashes, configs, limits), cached.

        Fetched again only when a forecast answer shows the service now runs a different model.
        """
        if self._info is None:
            response = self._request("GET", "/v1/model")
            try:
                info = response.json()
            except ValueError:
                info = None
            if not isinstance(info, dict):
                raise ForecasterUnavailable(f"{self.endpoint}: /v1/model did not return an object")
            self._info = info
            self._info_fingerprint = response.headers.get(MODEL_HEADER)
        return dict(self._info)

    # ----- readiness -----

    def probe(self, timeout: float = 2.0) -> str:
        """One quick look, no retries: "ready", "loading" (answers but not ready, or failed) or "down"."""
        try:
            response = self._http.get("/readyz", timeout=timeout)
        except httpx.HTTPError as exc:
            self.last_probe_error = describe_transport_error(exc, self.endpoint)
            return "down"
        self.last_probe_error = None
        return "ready" if response.status_code == 200 else "loading"

    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        """/healthz as data (state, uptime, load time), for status commands; ForecasterUnavailable if down."""
        try:
            response = self._http.get("/healthz", timeout=timeout)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ForecasterUnavailable(f"forecaster at {self.endpoint} does not answer /healthz: {exc}") from exc
        return body if isinstance(body, dict) else {}

    def wait_ready(self, timeout: float) -> dict[str, object]:
        """Wait (with backoff, logging progress) until the service is ready; returns model_info().

        timeout 0 means one probe. Raises ForecasterUnavailable when the deadline passes.
        """
        start = time.monotonic()
        deadline = start + timeout
        delay = 0.2
        last_state = ""
        last_log = 0.0
        while True:
            state = self.probe(timeout=max(0.1, min(2.0, deadline - time.monotonic())) if timeout else 2.0)
            if state == "ready":
                info = self.model_info()
                self.log.info(
                    "forecaster.connected",
                    endpoint=self.endpoint,
                    waited_seconds=round(time.monotonic() - start, 3),
                    model=info.get("model"),
                )
                return info
            now = time.monotonic()
            if now >= deadline:
                why = (
                    f"nothing answers: {self.last_probe_error}" if state == "down" else "model still loading or failed"
                )
                raise ForecasterUnavailable(
                    f"forecaster at {self.endpoint} not ready after {timeout:g} s ({why}); "
                    "is kronos-forecaster.service running?"
                )
            if state != last_state or now - last_log >= 10.0:
                self.log.info(
                    "forecaster.waiting",
                    endpoint=self.endpoint,
                    state=state,
                    waited_seconds=round(now - start, 1),
                    timeout_seconds=timeout,
                )
                last_state, last_log = state, now
            self._sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 1.0)

    # ----- plumbing -----

    def _request(
        self, method: str, path: str, *, content: str | None = None, retry_read_timeout: bool = True
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if content is not None else None
        policy = RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            max_delay_seconds=MAX_BACKOFF_SECONDS,
            sleep=self._sleep,
            repeats=self.repeats,
        )

        def attempt(_number: int) -> httpx.Response:
            try:
                response = self._http.request(method, path, content=content, headers=headers)
            except httpx.ReadTimeout as exc:
                if not retry_read_timeout:
                    raise ForecasterUnavailable(
                        f"forecaster at {self.endpoint} did not answer {method} {path} within {self.timeout:g} s"
                    ) from exc
                raise
            if response.status_code >= 500:
                raise _ServerError(response)
            if response.status_code >= 400:
                self._raise_client_error(response)
            return response

        def classify(exc: BaseException) -> Failure | None:
            if isinstance(exc, _ServerError):
                return Failure(True, f"HTTP {exc.status}: {exc.detail}", exc.status, exc.retry_after)
            if isinstance(exc, httpx.ReadTimeout):
                return Failure(True, f"read timeout after {self.timeout:g} s")
            if isinstance(exc, httpx.TransportError):
                return Failure(True, describe_transport_error(exc, self.endpoint))
            return None

        def on_retry(number: int, delay: float, failure: Failure) -> None:
            policy.log(
                self.log,
                "forecaster.retry",
                endpoint=self.endpoint,
                path=path,
                attempt=number,
                max_attempts=self.max_attempts,
                error=failure.description,
                delay_seconds=round(delay, 3),
            )

        try:
            return retry.call(attempt, policy=policy, classify=classify, on_retry=on_retry)
        except RetryFailed as exc:
            raise ForecasterUnavailable(
                f"forecaster at {self.endpoint} unavailable after {self.max_attempts} attempt"
                f"{'s' if self.max_attempts > 1 else ''}: {exc.failure.description}"
            ) from exc.__cause__

    def _raise_client_error(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 401:
            raise ForecasterAuthError(self.endpoint, had_token=self._token is not None)
        if status == 422:
            error = _error_body(response)
            if error is not None and error.problems:
                first = error.problems[0]
                more = len(error.problems) - 1
                problem = first.problem + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
                raise ForecastInputError(first.series or "(request)", problem)
            raise ForecastInputError("(request)", _detail(response))
        raise ForecasterRequestError(status, _detail(response))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ForecasterClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ForecasterClient({self.endpoint!r})"


def _error_body(response: httpx.Response) -> ErrorResponse | None:
    try:
        return ErrorResponse.model_validate_json(response.content)
    except ValidationError:
        return None


def _detail(response: httpx.Response) -> str:
    error = _error_body(response)
    if error is not None:
        return error.detail
    return response.text[:300] or response.reason_phrase


class _ServerError(Exception):
    """A 5xx answer, raised inside an attempt so that the retry policy sees it (503 = loading or busy)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status = response.status_code
        self.detail = _detail(response)
        self.retry_after = parse_retry_after(response.headers.get("retry-after"))
