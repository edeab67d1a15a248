"""Running the forecaster app: socket binding, uvicorn, systemd notifications, signals.

Why we bind sockets ourselves instead of passing `uds=`/`host=` to uvicorn:
- uvicorn chmods a Unix socket to 0666 (world-writable); ours is chmodded to 0660 between bind() and
  listen(), so no client can ever connect while it is more open than group-only;
- a stale socket file from a crashed run is removed, but only after checking nobody answers on it, and a
  path that exists and is not a socket is never deleted;
- binding TCP port 0 gives tests and benchmarks a free port we can read back.

Systemd: READY=1 is sent only when the model is loaded *and* uvicorn accepts connections; WATCHDOG=1 is
sent from the event loop at half of $WATCHDOG_USEC, so a wedged loop stops the pings and systemd restarts
the service. SIGTERM/SIGINT stop uvicorn gracefully and `run` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from kronos_bot.config import is_loopback
from kronos_bot.forecaster.service import ForecastService, ModelLoader, ServiceLimits, create_app
from kronos_bot.logs import get_logger
from kronos_bot.systemd import Notifier

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_PATH_BYTES = 107
SOCKET_MODE = 0o660
SOCKET_DIR_MODE = 0o750
BACKLOG = 128
EXIT_OK = 0
EXIT_LOAD_FAILED = 1


class StartupRefused(RuntimeError):
    """The forecaster will not start with this configuration (message says why and what to do)."""


@dataclass(frozen=True)
class Endpoint:
    """Where the forecaster listens: a Unix socket path, or a TCP host and port."""

    socket_path: str | None = None
    host: str | None = None
    port: int | None = None

    def describe(self) -> str:
        return f"unix:{self.socket_path}" if self.socket_path else str(self.url)

    @property
    def url(self) -> str | None:
        """The base URL for TCP endpoints (None for a Unix socket)."""
        return None if self.socket_path else f"http://{_host_for_url(self.host or '')}:{self.port}"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_tcp_allowed(host: str, token: str | None) -> None:
    """Refuse to expose an unauthenticated model server beyond this machine."""
    if not token and not is_loopback(host):
        raise StartupRefused(
            f"refusing to listen on {host} without a token: set KRONOS_BOT_FORECASTER_TOKEN "
            "(clients send it as a bearer token), or bind 127.0.0.1, or use the Unix socket"
        )


def bind_unix_socket(path: str | os.PathLike[str], log: Any = None) -> socket.socket:
    """A listening AF_UNIX socket at `path`, mode 0660, its directory created (0750) if missing."""
    log = log or get_logger("kronos_bot.forecaster.server")
    target = Path(path)
    if len(os.fsencode(target)) > MAX_UNIX_PATH_BYTES:
        raise StartupRefused(
            f"socket path too long for AF_UNIX ({len(os.fsencode(target))} > {MAX_UNIX_PATH_BYTES} bytes): {target}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=SOCKET_DIR_MODE)
    except OSError as exc:
        raise StartupRefused(f"cannot create the socket directory {target.parent}: {exc}") from exc
    _remove_stale_socket(target, log)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(target))
        # Before listen(): nobody can connect until the mode is group-only.
        os.chmod(target, SOCKET_MODE)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupRefused(f"cannot listen on {target}: {exc}") from exc
    return sock


def _remove_stale_socket(path: Path, log: Any) -> None:
    if not os.path.lexists(path):
        return
    mode = os.lstat(path).st_mode
    if not stat.S_ISSOCK(mode):
        raise StartupRefused(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        log.info("forecaster.stale_socket_removed", socket=str(path))
        return
    except OSError as exc:
        raise StartupRefused(f"cannot tell whether {path} is in use ({exc}); remove it if it is stale") from exc
    finally:
        probe.close()
    raise StartupRefused(f"another process is already serving on {path}")


def bind_tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 = any free port; read it back from getsockname())."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupRefused(f"cannot resolve {host!r}: {exc}") from exc
    family, socktype, proto, _canon, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupRefused(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


def endpoint_of(sock: socket.socket) -> Endpoint:
    if sock.family == socket.AF_UNIX:
        return Endpoint(socket_path=str(sock.getsockname()))
    host, port = sock.getsockname()[:2]
    return Endpoint(host=host, port=port)


class ForecasterServer:
    """uvicorn serving one app on one pre-bound socket, with a supervisor task for systemd and failures."""

    def __init__(
        self,
        app: FastAPI,
        sock: socket.socket,
        *,
        notifier: Notifier | None = None,
        log: Any = None,
        graceful_seconds: float = 10.0,
    ) -> None:
        self.app = app
        self.sock = sock
        self.endpoint = endpoint_of(sock)
        self.notifier = notifier or Notifier(environ={})
        self.log = log or get_logger("kronos_bot.forecaster.server")
        self.service: ForecastService = app.state.service
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=max(1, math.ceil(graceful_seconds)),
        )
        self.uvicorn = uvicorn.Server(config)
        self.ready_sent = False
        self.exit_code = EXIT_OK

    def request_stop(self) -> None:
        """Ask uvicorn to stop (safe from any thread: it polls the flag)."""
        self.uvicorn.should_exit = True

    async def serve(self) -> int:
        self.log.info("forecaster.listening", endpoint=self.endpoint.describe(), pid=os.getpid())
        supervisor = asyncio.create_task(self._supervise())
        try:
            await self.uvicorn.serve(sockets=[self.sock])
        finally:
            supervisor.cancel()
            self.notifier.stopping()
        return self.exit_code

    async def _supervise(self) -> None:
        watchdog = self.notifier.watchdog_seconds
        interval = watchdog / 2 if watchdog else None
        next_ping = time.monotonic()
        stopping_sent = False
        while True:
            now = time.monotonic()
            if interval is not None and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + interval
            if not self.ready_sent and self.uvicorn.started and self.service.state == "ready":
                self.ready_sent = True
                self.notifier.ready(f"serving {self.service.label()} on {self.endpoint.describe()}")
                self.log.info(
                    "forecaster.ready",
                    endpoint=self.endpoint.describe(),
                    model=self.service.label(),
                    ready_after_seconds=self.service.ready_after_seconds,
                )
            if self.service.state == "failed" and not self.uvicorn.should_exit:
                self.exit_code = EXIT_LOAD_FAILED
                self.log.error("forecaster.exiting", reason="model load failed", error=self.service.load_error)
                self.notifier.status(f"model load failed: {self.service.load_error}")
                self.uvicorn.should_exit = True
            if self.uvicorn.should_exit and not stopping_sent:
                stopping_sent = True
                self.notifier.stopping()
            await asyncio.sleep(min(0.05, interval) if interval else 0.05)


def run(
    loader: ModelLoader,
    *,
    socket_path: str | None = None,
    host: str | None = None,
    port: int | None = None,
    limits: ServiceLimits | None = None,
    token: str | None = None,
    log: Any = None,
    notifier: Notifier | None = None,
    graceful_seconds: float = 10.0,
    api_docs: bool = False,
) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or a failed model load (exit 1); call from the main thread.

    Exactly one of `socket_path` or `host`/`port` selects the transport. Raises StartupRefused before
    anything is bound when the configuration is unsafe (non-loopback TCP without a token).
    `api_docs` serves /docs and /openapi.json (forecaster.api_docs; off in production).
    """
    log = log or get_logger("kronos_bot.forecaster.server")
    if socket_path is None and host is None:
        raise StartupRefused("no socket path and no host given")
    if socket_path is None:
        assert host is not None
        check_tcp_allowed(host, token)
        sock = bind_tcp_socket(host, port or 0)
    else:
        sock = bind_unix_socket(socket_path, log)
    socket_inode = os.stat(socket_path).st_ino if socket_path else None
    notifier = notifier or Notifier(log=log)
    notifier.status("loading the model")
    app = create_app(loader, limits=limits, token=token, log=log, api_docs=api_docs)
    server = ForecasterServer(app, sock, notifier=notifier, log=log, graceful_seconds=graceful_seconds)

    received: list[int] = []

    def note_signal(signum: int, _frame: FrameType | None) -> None:
        # uvicorn handles signals while it runs and re-raises them when it returns: land here, not in a
        # default handler that would kill the process with a signal status instead of exit 0.
        received.append(signum)
        server.request_stop()

    previous = {sig: signal.signal(sig, note_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = asyncio.run(server.serve())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        if socket_path and socket_inode is not None:
            _unlink_if_ours(socket_path, socket_inode)
    log.info("forecaster.stopped", exit_code=code, signal=signal.Signals(received[0]).name if received else None)
    return code


def _unlink_if_ours(path: str, inode: int) -> None:
    """Remove our socket file on exit, unless another process has since replaced it."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


class BackgroundServer:
    """The forecaster in a background thread of this process: for tests, benchmarks and tools.

    Give it an app (from `create_app`) and either a Unix socket path or a host (port 0 = a free port).
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        socket_path: str | None = None,
        host: str | None = None,
        port: int = 0,
        notifier: Notifier | None = None,
        log: Any = None,
    ) -> None:
        self.sock = bind_unix_socket(socket_path, log) if socket_path else bind_tcp_socket(host or "127.0.0.1", port)
        self.server = ForecasterServer(app, self.sock, notifier=notifier, log=log, graceful_seconds=2.0)
        self.endpoint = self.server.endpoint
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="kronos-forecaster-server", daemon=True)

    @property
    def service(self) -> ForecastService:
        return self.server.service

    def _run(self) -> None:
        self.exit_code = asyncio.run(self.server.serve())

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Start and wait until uvicorn accepts connections (the model may still be loading)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"forecaster did not start on {self.endpoint.describe()}")
            time.sleep(0.01)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.service.ready_event.wait(timeout):
            raise RuntimeError(f"model not loaded within {timeout} s ({self.service.state})")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.request_stop()
        self._thread.join(timeout)
        self.sock.close()
        if self.endpoint.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.endpoint.socket_path)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
