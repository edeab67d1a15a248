"""Delivery of notifications to every apprise URL, off the trading path.

The trader only calls `submit`, which puts the message in a bounded queue and returns at once; one
daemon thread sends each message to each URL. Every delivery is bounded twice: the plugin's socket
connect/read timeouts end the HTTP request itself, and apprise's `notify(timeout=...)` stops waiting for
the service (apprise then reports TIMEOUT and leaves its worker to the socket timeouts). A message goes to
all URLs once before any URL is retried, so a dead endpoint delays the others by one timeout at most.
Each URL has its own `apprise.Apprise` object so that each URL's outcome is known and reported.

URLs carry tokens: what is logged or printed is apprise's privacy form without its query string (apprise
prints header and query parameters in clear, e.g. json://...?+X-Token=...); a URL apprise cannot parse is
shown by its scheme only.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import apprise

from kronos_bot.config import NotifySettings
from kronos_bot.logs import get_logger
from kronos_bot.notify.messages import Message

log = get_logger("kronos_bot.notify")

_NOTIFY_TYPES = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "error": apprise.NotifyType.FAILURE,
}
_SCHEME_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")
# Set while apprise parses our URLs: some plugins log the unparseable URL in clear ("Unparseable
# Telegram URL tgram://<token>"), so those records are dropped (contextvars: only our own parsing).
_PARSING: contextvars.ContextVar[bool] = contextvars.ContextVar("kronos_notify_parsing", default=False)
# Shown instead of a message when a delivery failed without apprise saying why.
_NO_REASON = "the service reported a failure"


class _DropWhileParsing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _PARSING.get()


def _install_parse_filter() -> None:
    apprise_logger = logging.getLogger("apprise")
    if not any(isinstance(f, _DropWhileParsing) for f in apprise_logger.filters):
        apprise_logger.addFilter(_DropWhileParsing())


@dataclass(frozen=True)
class UrlOutcome:
    masked_url: str
    ok: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class _Target:
    masked_url: str
    raw_url: str  # only to scrub it out of error texts, never logged
    apprise: apprise.Apprise


def masked_url(url: str) -> str:
    """The form of `url` that may be logged: apprise's privacy form, or `scheme://***` if it is invalid."""
    plugin = _parse(url)
    return _mask(plugin) if plugin is not None else _invalid_form(url)


def _parse(url: str) -> apprise.NotifyBase | None:
    _install_parse_filter()
    token = _PARSING.set(True)
    try:
        plugin = apprise.Apprise.instantiate(url.strip())
    except Exception:
        plugin = None
    finally:
        _PARSING.reset(token)
    return plugin if isinstance(plugin, apprise.NotifyBase) else None


def _mask(plugin: apprise.NotifyBase) -> str:
    return str(plugin.url(privacy=True)).split("?", 1)[0]


def _invalid_form(url: str) -> str:
    match = _SCHEME_RE.match(url)
    return f"{match.group(1).lower()}://***" if match else "***"


class NotificationSender:
    """Sends `Message`s to every valid URL; never blocks the caller of `submit`, never hangs `close`."""

    def __init__(self, urls: Sequence[str], settings: NotifySettings) -> None:
        self.settings = settings
        self.targets: list[_Target] = []
        self.invalid: list[str] = []
        for index, url in enumerate(urls, 1):
            plugin = _parse(url)
            if plugin is None:
                masked = _invalid_form(url)
                self.invalid.append(masked)
                log.warning("notify.invalid_url", url=masked, index=index, reason="apprise cannot use this URL")
                continue
            masked = _mask(plugin)  # before the timeouts below, which would show up as ?rto=&cto=
            limit = settings.timeout_seconds
            plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), limit)
            plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), limit)
            target = apprise.Apprise()
            target.add(plugin)
            self.targets.append(_Target(masked, url, target))
        self.dropped = 0  # messages dropped on a full queue, in total
        self._episode_dropped = 0  # ... since the queue last had room (logged when it has again)
        self._dropping = False
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=settings.queue_size)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._worker: threading.Thread | None = None

    # ----- the trading path: never blocks -----

    def submit(self, message: Message) -> bool:
        """Queue `message` for the worker; False when it was dropped (full queue, closed, no URL)."""
        if self._closing.is_set() or not self.targets:
            return False
        with self._lock:
            self._start_worker_locked()
            try:
                self._queue.put_nowait(message)
            except queue.Full:
                self.dropped += 1
                self._episode_dropped += 1
                if not self._dropping:
                    self._dropping = True
                    log.warning("notify.queue_full", queue_size=self.settings.queue_size, notify_event=message.event)
                return False
            self._room_again_locked()
        return True

    def close(self, timeout: float) -> None:
        """Stop accepting; give the queued messages at most `timeout` seconds, then return regardless.

        Closing also cuts the backoff waits short: at shutdown a retry now beats a retry never.
        """
        self._closing.set()
        # Wakes a worker waiting on an empty queue; a full queue means it is busy and checks `_closing` first.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        with self._lock:
            worker = self._worker
        if worker is None:
            return
        worker.join(max(0.0, timeout))
        if worker.is_alive():
            log.warning("notify.close_timeout", timeout_seconds=timeout, unsent=self._queue.qsize())

    # ----- synchronous, for `kronos-bot notify-test` -----

    def send_now(self, message: Message) -> list[UrlOutcome]:
        """Deliver `message` to every valid URL now, in this thread (attempts, backoff and timeouts apply)."""
        return self._deliver(message)

    # ----- the worker -----

    def _start_worker_locked(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="kronos-notify", daemon=True)
            self._worker.start()

    def _room_again_locked(self) -> None:
        """A drop episode ends when the queue has room again: one line with what it cost."""
        if self._dropping:
            log.info("notify.queue_drained", dropped=self._episode_dropped, dropped_total=self.dropped)
            self._dropping = False
            self._episode_dropped = 0

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait() if self._closing.is_set() else self._queue.get()
            except queue.Empty:
                return
            with self._lock:
                self._room_again_locked()
            if item is None:
                continue
            try:
                self._deliver(item)
            except Exception as exc:  # the worker must outlive any surprise of a plugin
                log.exception("notify.worker_error", notify_event=item.event, error=f"{type(exc).__name__}: {exc}")

    def _deliver(self, message: Message) -> list[UrlOutcome]:
        attempts = [0] * len(self.targets)
        errors: list[str | None] = [None] * len(self.targets)
        pending = list(range(len(self.targets)))
        for attempt in range(1, self.settings.max_attempts + 1):
            for i in pending:
                attempts[i] = attempt
                errors[i] = self._send_once(self.targets[i], message)
            pending = [i for i in pending if errors[i] is not None]
            if not pending or attempt == self.settings.max_attempts:
                break
            self._closing.wait(self.settings.backoff_seconds * 2 ** (attempt - 1))
        outcomes = []
        for target, tries, error in zip(self.targets, attempts, errors, strict=True):
            outcomes.append(UrlOutcome(target.masked_url, error is None, tries, error))
            if error is None:
                log.debug("notify.sent", url=target.masked_url, notify_event=message.event, attempts=tries)
            else:
                log.warning(
                    "notify.failed", url=target.masked_url, notify_event=message.event, attempts=tries, error=error
                )
        return outcomes

    def _send_once(self, target: _Target, message: Message) -> str | None:
        """One delivery to one URL: None when it went out, else why not (with the URL scrubbed out)."""
        try:
            result = target.apprise.notify(
                body=message.body,
                title=message.title,
                notify_type=_NOTIFY_TYPES[message.level],
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self.settings.timeout_seconds,
            )
        except Exception as exc:
            return self._scrub(f"{type(exc).__name__}: {exc}", target)
        if result:
            return None
        return self._scrub(_reason(result), target)

    @staticmethod
    def _scrub(text: str, target: _Target) -> str:
        return text.replace(target.raw_url.strip(), target.masked_url)


def _reason(result: apprise.AppriseResult) -> str:
    """apprise's own words for the failure (the last attempt's warnings), else its status."""
    for service in result:
        for attempt in reversed(service.attempts):
            words = [entry.message for entry in attempt if entry.level in ("WARNING", "ERROR", "CRITICAL")]
            if words:
                return " ".join(words)
        if service.status == apprise.AppriseResultStatus.TIMEOUT:
            return "timed out"
    return f"{_NO_REASON} ({result.status.name.lower()})"
