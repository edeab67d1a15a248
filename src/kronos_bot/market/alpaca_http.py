"""alpaca-py data clients with OUR timeout and retry policy in force instead of alpaca-py's own.

Why replace alpaca-py's retry: its `RESTClient._request` retries only 429 and 504, sleeps a fixed 3 s
with `time.sleep` (ignoring Retry-After, and impossible to fake in tests), never retries 500/502/503,
timeouts or dropped connections, and its `requests.Session` has NO timeout at all, so a hung server hangs
the cycle. Keeping both layers would also multiply attempts (ours x theirs). So the subclasses below set
alpaca-py's retry count to 0 and its retry codes to none, and override `_one_request` -- the single place
each HTTP exchange (one page of a paginated call) happens -- to add a timeout and the bot's one retry
policy (`kronos_bot.retry`): 429 and 5xx, timeouts, connection errors and malformed JSON are retried
(Retry-After wins), other 4xx (bad symbol, bad keys) are not, and after `max_attempts` a
`MarketDataError` says what failed and how often it was tried.

Retrying per HTTP exchange (not per call) means a failure on page 3 of a paginated bars request retries
page 3 only. `_one_request` is a private alpaca-py method; its signature has been stable for years, and
the contract tests against the fake server fail loudly if a new alpaca-py changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical.crypto import CryptoHistoricalDataClient
from alpaca.data.historical.news import NewsClient

from kronos_bot import retry
from kronos_bot.logs import get_logger
from kronos_bot.retry import Failure, RetryFailed, RetryPolicy, describe_transport_error, parse_retry_after

# Longest single wait between attempts, seconds (caps both backoff doubling and a 429's Retry-After).
MAX_RETRY_DELAY_SECONDS = 60.0

Sleep = Callable[[float], None]
log = get_logger("kronos_bot.market")


class MarketDataError(RuntimeError):
    """Data could not be had from Alpaca this time; the message names the failure and the attempts."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


def classify(exc: BaseException) -> Failure | None:
    """What kind of failure this is, or None if it is not an HTTP-exchange failure at all."""
    if isinstance(exc, APIError):
        status = exc.status_code
        response = exc.response
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After") if response is not None else None)
            return Failure(True, "HTTP 429 (rate limited)", status, retry_after)
        if status is not None and status >= 500:
            return Failure(True, f"HTTP {status}", status)
        return Failure(False, f"HTTP {status}: {str(exc)[:200]}", status)
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return Failure(True, "malformed JSON")
    if isinstance(
        exc,
        (requests.exceptions.Timeout, requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError),
    ):
        return Failure(True, describe_transport_error(exc))
    return None


class _PolicyMixin:
    """Overrides alpaca-py's `RESTClient._one_request` with a timeout and our RetryPolicy (see module doc)."""

    _policy: RetryPolicy
    _timeout_seconds: float

    def _install_policy(self, policy: RetryPolicy, timeout_seconds: float) -> None:
        self._policy = policy
        self._timeout_seconds = timeout_seconds
        # alpaca-py's own retry loop: off (0 retries, no retry codes), ours replaces it.
        self._retry = 0
        self._retry_codes: list[int] = []

    def _one_request(self, method: str, url: str, opts: dict[str, Any], retry_count: int) -> Any:
        policy = self._policy
        opts = {**opts, "timeout": self._timeout_seconds}
        exchange = super()._one_request  # type: ignore[misc]

        def on_retry(attempt: int, delay: float, failure: Failure) -> None:
            policy.log(
                log,
                "data.retry",
                url=url.split("?")[0],
                attempt=attempt,
                error=failure.description,
                retry_after=failure.retry_after,
                delay_seconds=round(delay, 3),
            )

        try:
            return retry.call(
                lambda _n: exchange(method, url, opts, 0), policy=policy, classify=classify, on_retry=on_retry
            )
        except RetryFailed as exc:
            raise MarketDataError(str(exc), status=exc.failure.status, attempts=exc.attempts) from exc.__cause__


class CryptoDataClient(_PolicyMixin, CryptoHistoricalDataClient):
    """`CryptoHistoricalDataClient` (keys optional) with our timeout and retry policy."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        timeout_seconds: float = 10.0,
        api_key: str | None = None,
        secret_key: str | None = None,
        url_override: str | None = None,
    ) -> None:
        super().__init__(api_key=api_key, secret_key=secret_key, url_override=url_override)
        self._install_policy(policy, timeout_seconds)


class AlpacaNewsClient(_PolicyMixin, NewsClient):
    """`NewsClient` (keys required) with our timeout and retry policy."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        timeout_seconds: float = 10.0,
        api_key: str,
        secret_key: str,
        url_override: str | None = None,
    ) -> None:
        super().__init__(api_key=api_key, secret_key=secret_key, url_override=url_override)
        self._install_policy(policy, timeout_seconds)
