"""alpaca-py data clients with OUR timeout and retry policy in force instead of alpaca-py's own.

Why replace alpaca-py's retry: its `RESTClient._request` retries only 429 and 504, sleeps a fixed 3 s
with `time.sleep` (ignoring Retry-After, and impossible to fake in tests), never retries 500/502/503,
timeouts or dropped connections, and its `requests.Session` has NO timeout at all, so a hung server hangs
the cycle. Keeping both layers would also multiply attempts (ours x theirs). So the subclasses below set
alpaca-py's retry count to 0 and its retry codes to none, and override `_one_request` — the single place
each HTTP exchange (one page of a paginated call) happens — to add a timeout and our policy:

- 429: wait max(backoff, Retry-After) — the server knows best how long it wants us away;
- 5xx, timeouts, connection errors, malformed JSON: exponential backoff (backoff x 2^(attempt-1));
- other 4xx (bad symbol, bad keys): no retry, it would fail the same way;
- every wait is capped at MAX_RETRY_DELAY_SECONDS so one cycle cannot stall for minutes;
- after `max_attempts`, `MarketDataError` says what failed and how often it was tried.

Retrying per HTTP exchange (not per call) means a failure on page 3 of a paginated bars request retries
page 3 only. `_one_request` is a private alpaca-py method; its signature has been stable for years, and
the contract tests against the fake server fail loudly if a new alpaca-py changes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical.crypto import CryptoHistoricalDataClient
from alpaca.data.historical.news import NewsClient

from kronos_bot.logs import get_logger

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


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits for one HTTP exchange; `sleep` is injectable so tests never really wait."""

    max_attempts: int = 4
    backoff_seconds: float = 1.0
    timeout_seconds: float = 10.0
    max_delay_seconds: float = MAX_RETRY_DELAY_SECONDS
    sleep: Sleep = time.sleep
    # True when a retry repeats an ongoing, already logged outage: it is then logged at debug (and counted).
    repeats: Callable[[str], bool] | None = None

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before attempt `attempt + 1`: doubling backoff, a longer Retry-After wins, both capped."""
        wait = self.backoff_seconds * (2 ** (attempt - 1))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_delay_seconds)


@dataclass(frozen=True)
class _Failure:
    retryable: bool
    description: str
    status: int | None = None
    retry_after: float | None = None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _classify(exc: Exception) -> _Failure | None:
    """What kind of failure this is, or None if it is not an HTTP-exchange failure at all."""
    if isinstance(exc, APIError):
        status = exc.status_code
        response = exc.response
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After") if response is not None else None)
            return _Failure(True, "HTTP 429 (rate limited)", status, retry_after)
        if status is not None and status >= 500:
            return _Failure(True, f"HTTP {status}", status)
        return _Failure(False, f"HTTP {status}: {str(exc)[:200]}", status)
    if isinstance(exc, requests.exceptions.Timeout):
        return _Failure(True, "timeout")
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return _Failure(True, "malformed JSON")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return _Failure(True, f"connection error: {type(exc).__name__}")
    return None


class _PolicyMixin:
    """Overrides alpaca-py's `RESTClient._one_request` with a timeout and our RetryPolicy (see module doc)."""

    _policy: RetryPolicy

    def _install_policy(self, policy: RetryPolicy) -> None:
        self._policy = policy
        # alpaca-py's own retry loop: off (0 retries, no retry codes), ours replaces it.
        self._retry = 0
        self._retry_codes = []

    def _one_request(self, method: str, url: str, opts: dict[str, Any], retry: int) -> Any:
        policy = self._policy
        opts = {**opts, "timeout": policy.timeout_seconds}
        attempt = 1
        while True:
            try:
                return super()._one_request(method, url, opts, 0)  # type: ignore[misc]
            except Exception as exc:
                failure = _classify(exc)
                if failure is None:
                    raise
                if not failure.retryable or attempt >= policy.max_attempts:
                    raise MarketDataError(
                        f"{failure.description} after {attempt} attempt(s)", status=failure.status, attempts=attempt
                    ) from exc
                delay = policy.delay(attempt, failure.retry_after)
                quiet = policy.repeats is not None and policy.repeats("data.retry")
                (log.debug if quiet else log.warning)(
                    "data.retry", url=url.split("?")[0], attempt=attempt, error=failure.description,
                    retry_after=failure.retry_after, delay_seconds=round(delay, 3),
                )
                policy.sleep(delay)
                attempt += 1


class CryptoDataClient(_PolicyMixin, CryptoHistoricalDataClient):
    """`CryptoHistoricalDataClient` (keys optional) with our timeout and retry policy."""

    def __init__(self, policy: RetryPolicy, *, api_key: str | None = None, secret_key: str | None = None,
                 url_override: str | None = None) -> None:
        super().__init__(api_key=api_key, secret_key=secret_key, url_override=url_override)
        self._install_policy(policy)


class AlpacaNewsClient(_PolicyMixin, NewsClient):
    """`NewsClient` (keys required) with our timeout and retry policy."""

    def __init__(self, policy: RetryPolicy, *, api_key: str, secret_key: str,
                 url_override: str | None = None) -> None:
        super().__init__(api_key=api_key, secret_key=secret_key, url_override=url_override)
        self._install_policy(policy)
