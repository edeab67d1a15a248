"""sd_notify over the documented notify-socket protocol: READY=1, WATCHDOG=1, STATUS=..., STOPPING=1.

Why our own ~50 lines instead of a package: the protocol is one datagram per message to the AF_UNIX
address in $NOTIFY_SOCKET (a leading '@' means the abstract namespace), and we want two behaviours the
common packages do not give together: a silent no-op when not under systemd, and the watchdog interval
read from $WATCHDOG_USEC (honouring $WATCHDOG_PID) so the service pings at half of it.
See sd_notify(3) and sd_watchdog_enabled(3).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from kronos_bot.logs import get_logger


class Notifier:
    """Sends sd_notify messages when $NOTIFY_SOCKET is set; every method is a no-op otherwise."""

    def __init__(self, environ: Mapping[str, str] | None = None, log: Any = None) -> None:
        env = os.environ if environ is None else environ
        self._log = log or get_logger("kronos_bot.systemd")
        self._address: str | bytes | None = None
        raw = env.get("NOTIFY_SOCKET", "")
        if raw.startswith("@"):
            self._address = "\0" + raw[1:]
        elif raw.startswith("/"):
            self._address = raw
        elif raw:
            # vsock: and other transports are for VMs/containers talking to a host manager; not ours.
            self._log.warning("systemd.notify_socket_unsupported", notify_socket=raw)
        self._watchdog_seconds = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_seconds(self) -> float | None:
        """The unit's WatchdogSec for this process, or None when no watchdog is asked for."""
        return self._watchdog_seconds

    def notify(self, *fields: str) -> bool:
        """Send one message made of `KEY=value` fields; False (logged, never raised) when it fails."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            self._log.warning("systemd.notify_failed", error=str(exc), message=message.decode())
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # the watchdog belongs to another process of the unit
    return int(usec) / 1_000_000
