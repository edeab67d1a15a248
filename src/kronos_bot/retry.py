"""One retry policy for every HTTP client of the bot: market data, the broker and the forecaster client.

Built on tenacity, the maintained library for this; what is ours is the policy, written once:
  * attempts are bounded (`max_attempts`); waits double from `backoff_seconds`, capped at
    `max_delay_seconds`, and a server's Retry-After wins when it is longer (capped too): it knows best;
  * what may be retried is each client's call (`classify`): 5xx, 429, timeouts and dropped connections
    are; a 4xx never is -- it would fail the same way;
  * every wait is logged with the client's own event (`data.retry`, `broker.retry`, `order.retry`,
    `forecaster.retry`) at warning, or at debug (and counted) while an ongoing degraded episode already
    says the same (`repeats`, wired to the trader's `DegradedTracker`);
  * `sleep` is injectable, so no test ever waits.
What stays with each client, in its attempt function: the broker looks an order up by client_order_id
after a failure that may have reached the broker and never resends one the broker has; each client turns
the final failure into its own error type (`RetryFailed` carries what it needs).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import tenacity

T = TypeVar("T")
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Failure:
    """How a client judges one failed exchange: may it be retried, and how to say what happened."""

    retryable: bool
    description: str
    status: int | None = None
    retry_after: float | None = None  # seconds the server asked for (429/503 Retry-After)


# A client's judgement of an exception; None means "not a transport failure": it propagates untouched.
Classify = Callable[[BaseException], Failure | None]


class RetryFailed(Exception):
    """The exchange failed for good: `failure` is the client's judgement of the last attempt."""

    def __init__(self, failure: Failure, attempts: int) -> None:
        super().__init__(f"{failure.description} after {attempts} attempt(s)")
        self.failure = failure
        self.attempts = attempts


class OutageLog(Protocol):
    """What the clients need of the trader's degraded-state tracker (kept abstract here, so the
    broker and market-data layers do not depend on the trader package)."""

    def set(self, name: str, reason: str, **details: Any) -> bool: ...

    def clear(self, name: str, **details: Any) -> bool: ...

    def repeat(self, components: str | Iterable[str] | None, event: str) -> bool: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits for one exchange; see the module doc for the rules."""

    max_attempts: int = 3
    backoff_seconds: float = 1.0
    max_delay_seconds: float = 60.0
    sleep: Sleep = time.sleep
    # True when a retry repeats an ongoing, already logged outage: it is then logged at debug (and counted).
    repeats: Callable[[str], bool] | None = None

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before attempt `attempt + 1`: doubling backoff, a longer Retry-After wins, both capped."""
        wait = self.backoff_seconds * (2 ** (attempt - 1))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_delay_seconds)

    def log(self, logger: Any, event: str, **fields: Any) -> None:
        """Log one retry: warning, or debug while an ongoing degraded episode explains it."""
        quiet = self.repeats is not None and self.repeats(event)
        (logger.debug if quiet else logger.warning)(event, **fields)


def call(
    attempt: Callable[[int], T],
    *,
    policy: RetryPolicy,
    classify: Classify,
    on_retry: Callable[[int, float, Failure], None],
) -> T:
    """`attempt(n)` (n = 1, 2, ...) until it returns.

    A failure `classify` does not recognise propagates as it is; one it calls retryable is tried again
    after the policy's wait (`on_retry(n, delay, failure)` first, to log it); when attempts run out, or
    the failure is not retryable, `RetryFailed` is raised from the last exception.
    """

    def retryable(exc: BaseException) -> bool:
        failure = classify(exc)
        return failure is not None and failure.retryable

    def wait(state: tenacity.RetryCallState) -> float:
        failure = _failure_of(state, classify)
        return policy.delay(state.attempt_number, failure.retry_after if failure else None)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = _failure_of(state, classify)
        if failure is not None and state.next_action is not None:
            on_retry(state.attempt_number, state.next_action.sleep, failure)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.max_attempts)),
        retry=tenacity.retry_if_exception(retryable),
        wait=wait,
        before_sleep=before_sleep,
        sleep=policy.sleep,
        reraise=True,
    )
    number = 0
    try:
        for attempt_state in retrying:
            with attempt_state:
                number = attempt_state.retry_state.attempt_number
                return attempt(number)
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        raise RetryFailed(failure, number) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")


_HOST_PORT = re.compile(r"host='([^']+)', port=(\d+)")
# Words a transport failure's text carries, most specific first: (pattern, what it means).
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"Name or service not known|Temporary failure in name resolution|nodename nor servname|"
            r"NameResolutionError|getaddrinfo failed|No address associated",
            re.I,
        ),
        "DNS lookup failed",
    ),
    (re.compile(r"Connection refused|Errno 111|ECONNREFUSED", re.I), "connection refused"),
    (re.compile(r"Network is unreachable|No route to host|Errno 101|Errno 113", re.I), "network unreachable"),
    (re.compile(r"No such file or directory|Errno 2\b", re.I), "no socket"),
    (re.compile(r"CERTIFICATE_VERIFY_FAILED|SSLError|TLS", re.I), "TLS handshake failed"),
    (
        re.compile(
            r"Connection reset|Errno 104|RemoteDisconnected|closed connection|"
            r"Connection aborted|IncompleteRead|ChunkedEncoding",
            re.I,
        ),
        "connection dropped",
    ),
    (re.compile(r"timed out|timeout", re.I), "timed out"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_transport_error(exc: BaseException, what: str = "") -> str:
    """A failed connection in words a user can act on: `DNS lookup failed for data.alpaca.markets`,
    `connection refused by 127.0.0.1:9`, `timed out (read) ...`, rather than `ConnectionError`.

    The libraries (requests/urllib3, httpx, socket) wrap the cause several layers deep; the whole chain
    is read, the host comes from urllib3's `host='...', port=N` text when there is one.
    """
    texts = [f"{type(e).__name__}: {e}" for e in _chain(exc)]
    if any(isinstance(e, socket.gaierror) for e in _chain(exc)):
        cause = "DNS lookup failed"
    else:
        joined = " | ".join(texts)
        cause = next((words for pattern, words in _CAUSES if pattern.search(joined)), type(exc).__name__)
        if cause == "timed out":
            names = " ".join(type(e).__name__ for e in _chain(exc))
            kind = "connect" if "ConnectTimeout" in names else "read" if "ReadTimeout" in names else ""
            if not kind:
                kind = "read" if "Read timed out" in joined else "connect" if "connect timeout" in joined else ""
            cause = f"timed out ({kind})" if kind else cause
    host = next((m for m in (_HOST_PORT.search(t) for t in texts) if m), None)
    where = what or (f"{host.group(1)}:{host.group(2)}" if host else "")
    if cause == "no socket":
        return f"no socket at {where or 'that path'} (is the service running?)"
    if where:
        preposition = "by" if cause == "connection refused" else "for" if cause.startswith("DNS") else "at"
        return f"{cause} {preposition} {where}"
    return cause


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


def _failure_of(state: tenacity.RetryCallState, classify: Classify) -> Failure | None:
    exc = state.outcome.exception() if state.outcome is not None else None
    return classify(exc) if exc is not None else None
