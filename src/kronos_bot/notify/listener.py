"""The trader's events as notifications: the one `TraderEvents` listener that talks to people.

It runs on the trading path (inside `EventHub`), so it only decides and enqueues: the `notify:` switches
and `min_level` are applied here, the message is built, and the sender's `submit` returns at once. A
message that cannot be built (an unexpected None in a record, say) is logged and skipped, never raised:
a notification is never worth an order.
"""

from __future__ import annotations

from collections.abc import Callable

from kronos_bot.config import NotifyEvent, NotifyLevel, NotifySettings, Settings
from kronos_bot.logs import get_logger
from kronos_bot.notify import messages
from kronos_bot.notify.messages import Message
from kronos_bot.notify.sender import NotificationSender
from kronos_bot.trader.events import DailySummary, DegradedChange, NoEvents, TraderStarted
from kronos_bot.trader.records import PositionRecord

log = get_logger("kronos_bot.notify")

LEVEL_ORDER: dict[NotifyLevel, int] = {"info": 0, "warning": 1, "error": 2}


class Notifications(NoEvents):
    """Filters, formats and submits; `close` gives the queue a bounded chance at shutdown."""

    def __init__(self, sender: NotificationSender, settings: NotifySettings) -> None:
        self.sender = sender
        self.settings = settings

    def trader_started(self, event: TraderStarted) -> None:
        self._notify("trader_started", lambda: messages.trader_started(event))

    def trader_stopped(self, reason: str, open_positions: int) -> None:
        self._notify("trader_stopped", lambda: messages.trader_stopped(reason, open_positions))

    def position_opened(self, position: PositionRecord) -> None:
        self._notify("position_opened", lambda: messages.position_opened(position))

    def position_closed(self, position: PositionRecord) -> None:
        self._notify("position_closed", lambda: messages.position_closed(position))

    def degraded(self, change: DegradedChange) -> None:
        self._notify("degraded", lambda: messages.degraded(change))

    def daily_summary(self, summary: DailySummary) -> None:
        self._notify("daily_summary", lambda: messages.daily_summary(summary))

    def close(self, timeout: float) -> None:
        self.sender.close(timeout)

    def wanted(self, event: NotifyEvent, level: NotifyLevel | None = None) -> bool:
        """Whether `event` (at `level`, when known) passes `notify.enabled`, its switch and `min_level`."""
        if not self.settings.enabled or not getattr(self.settings.events, event):
            return False
        return level is None or LEVEL_ORDER[level] >= LEVEL_ORDER[self.settings.min_level]

    def _notify(self, event: NotifyEvent, build: Callable[[], Message]) -> None:
        if not self.wanted(event):
            return
        try:
            message = build()
        except Exception as exc:
            log.exception("notify.format_failed", notify_event=event, error=f"{type(exc).__name__}: {exc}")
            return
        if self.wanted(event, message.level):
            self.sender.submit(message)


def notifications_from_settings(settings: Settings) -> Notifications | None:
    """The listener for the configured URLs; None when notifications are off or no URL is set (or valid)."""
    urls = settings.notify_url_list()
    if not settings.notify.enabled or not urls:
        return None
    sender = NotificationSender(urls, settings.notify)
    if not sender.targets:
        return None
    log.info("notify.enabled", urls=[t.masked_url for t in sender.targets], min_level=settings.notify.min_level)
    return Notifications(sender, settings.notify)
