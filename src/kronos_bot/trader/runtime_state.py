"""The running trader's own account of itself, kept in the journal for `kronos-bot status`.

`status` runs in another process and must answer in a few seconds even when Alpaca or the forecaster
are down, so it cannot ask the trader; the trader writes what it knows instead (journal table
`runtime_state`): whether it is running (with pid, mode, start time) or stopped, which parts are degraded
since when and why, and the last account reading. Written on a change (an account reading at most once
per cycle), never per tick.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kronos_bot.broker.base import Account
from kronos_bot.trader.events import DegradedChange, NoEvents, TraderStarted
from kronos_bot.trader.journal import Journal

TRADER_KEY = "trader"
DEGRADED_KEY = "degraded"
ACCOUNT_KEY = "account"


class RuntimeRecorder(NoEvents):
    """A TraderEvents listener writing runtime_state (see the module doc)."""

    def __init__(self, journal: Journal, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.journal = journal
        self.clock = clock
        self._degraded: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def trader_started(self, event: TraderStarted) -> None:
        now = self.clock()
        self.journal.set_runtime_state(
            TRADER_KEY,
            {
                "state": "running",
                "pid": os.getpid(),
                "mode": event.mode,
                "broker": event.broker,
                "symbols": list(event.symbols),
                "started_at": now.isoformat(),
            },
            now,
        )

    def trader_stopped(self, reason: str, open_positions: int) -> None:
        now = self.clock()
        previous = self.journal.runtime_state().get(TRADER_KEY, {})
        previous.pop("updated_at", None)
        self.journal.set_runtime_state(
            TRADER_KEY,
            {**previous, "state": "stopped", "stopped_at": now.isoformat(), "stop_reason": reason},
            now,
        )

    def degraded(self, change: DegradedChange) -> None:
        with self._lock:
            if change.active:
                self._degraded[change.component] = {"reason": change.reason, "since": change.since.isoformat()}
            else:
                self._degraded.pop(change.component, None)
            current = dict(self._degraded)
        self.journal.set_runtime_state(DEGRADED_KEY, {"active": current}, change.at)

    def account_seen(self, account: Account, at: datetime) -> None:
        self.journal.set_runtime_state(
            ACCOUNT_KEY,
            {
                "cash": str(account.cash),
                "buying_power": str(account.buying_power),
                "equity": str(account.equity),
                "currency": account.currency,
                "trading_blocked": account.trading_blocked,
                "at": at.isoformat(),
            },
            at,
        )
