"""Sockets, start-up refusals, sd_notify and SIGTERM of the forecaster process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kronos_bot.forecast_types import SamplingParams
from kronos_bot.forecaster.client import ForecasterClient
from kronos_bot.forecaster.server import (
    BackgroundServer,
    StartupRefused,
    bind_unix_socket,
    check_tcp_allowed,
    is_loopback,
    run,
)
from kronos_bot.forecaster.service import ServiceLimits, create_app
from kronos_bot.systemd import Notifier
from tests.forecaster_support import (
    TINY_MODEL,
    TINY_TOKENIZER,
    BlockingLoader,
    make_series,
    short_socket_path,
    tiny_model,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(short_socket_path()).parent
    yield path
    shutil.rmtree(path, ignore_errors=True)


class NotifyListener:
    """A fake systemd: a datagram socket collecting sd_notify messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def collect_until(self, predicate: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate in m for m in self.messages):
                return True
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())
        return any(predicate in m for m in self.messages)

    def close(self) -> None:
        self.sock.close()


def test_loopback_detection_and_tcp_refusal() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.5.0.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "gpu-host"))
    check_tcp_allowed("127.0.0.1", None)
    check_tcp_allowed("0.0.0.0", "secret")
    with pytest.raises(StartupRefused, match="KRONOS_BOT_FORECASTER_TOKEN"):
        check_tcp_allowed("0.0.0.0", None)


def test_run_refuses_public_tcp_without_token_before_loading() -> None:
    loader = BlockingLoader()
    with pytest.raises(StartupRefused, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        run(loader, host="0.0.0.0", port=0)
    assert not loader.gate.is_set()


def test_unix_socket_is_group_only_in_a_created_directory(sock_dir: Path) -> None:
    path = sock_dir / "run" / "kronos-bot" / "f.sock"
    sock = bind_unix_socket(path)
    try:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
        assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o007 == 0
    finally:
        sock.close()


def test_stale_socket_is_replaced_but_live_socket_and_files_are_not(sock_dir: Path) -> None:
    path = sock_dir / "f.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays behind, nobody listens: a crashed run
    live = bind_unix_socket(path)
    try:
        with pytest.raises(StartupRefused, match="already serving"):
            bind_unix_socket(path)
    finally:
        live.close()
    regular = sock_dir / "not-a-socket"
    regular.write_text("keep me")
    with pytest.raises(StartupRefused, match="not a socket"):
        bind_unix_socket(regular)
    assert regular.read_text() == "keep me"
    with pytest.raises(StartupRefused, match="too long"):
        bind_unix_socket(sock_dir / ("x" * 120))


def test_notifier_is_a_no_op_outside_systemd() -> None:
    notifier = Notifier(environ={})
    assert not notifier.enabled and notifier.watchdog_seconds is None
    assert notifier.ready("x") is False
    assert Notifier(environ={"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None
    assert Notifier(environ={"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_seconds == 2.0


def test_ready_only_after_load_and_watchdog_pings(sock_dir: Path) -> None:
    listener = NotifyListener(str(sock_dir / "notify"))
    loader = BlockingLoader()
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(sock_dir / "notify"), "WATCHDOG_USEC": "100000"})
    server = BackgroundServer(create_app(loader, limits=ServiceLimits()), host="127.0.0.1", notifier=notifier).start()
    try:
        assert listener.collect_until("WATCHDOG=1", 5)
        time.sleep(0.2)
        listener.collect_until("READY=1", 0.2)
        assert not any("READY=1" in m for m in listener.messages)
        loader.release()
        assert listener.collect_until("READY=1", 30)
        ready = next(m for m in listener.messages if "READY=1" in m)
        assert "STATUS=serving" in ready and server.endpoint.describe() in ready
        pings_before = sum("WATCHDOG=1" in m for m in listener.messages)
        listener.collect_until("never", 0.5)  # pings every 0.05 s: expect ~10, accept a loaded box's 2
        assert sum("WATCHDOG=1" in m for m in listener.messages) >= pings_before + 2
    finally:
        server.stop()
    assert listener.collect_until("STOPPING=1", 2)
    listener.close()


def test_notify_socket_in_the_abstract_namespace() -> None:
    name = f"kronos-test-{uuid.uuid4().hex}"
    listener = NotifyListener("\0" + name)
    try:
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}).notify("STATUS=hello")
        assert listener.collect_until("STATUS=hello", 2)
    finally:
        listener.close()


def test_forecaster_command_serves_and_exits_cleanly_on_sigterm(sock_dir: Path) -> None:
    """The real `kronos-bot forecaster` process: READY=1 via sd_notify, a forecast, SIGTERM -> exit 0."""
    socket_path = sock_dir / "f.sock"
    listener = NotifyListener(str(sock_dir / "notify"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONOS_BOT")}
    env.update(NOTIFY_SOCKET=str(sock_dir / "notify"), KRONOS_BOT__FORECASTER__THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "kronos_bot",
        "--config",
        str(REPO_ROOT / "config" / "bot.yaml"),
        "--log-format",
        "json",
        "forecaster",
        "--socket",
        str(socket_path),
        "--model",
        str(TINY_MODEL),
        "--tokenizer",
        str(TINY_TOKENIZER),
        "--no-verify",
    ]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert listener.collect_until("READY=1", 60), "no READY=1"
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
        with ForecasterClient(socket_path=str(socket_path)) as client:
            forecast = client.forecast([make_series()], SamplingParams(samples=2, seed=3))
        assert forecast[0].candles
        direct = tiny_model().forecast([make_series()], SamplingParams(samples=2, seed=3))
        assert forecast[0].path_closes == direct[0].path_closes
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        listener.close()
    assert process.returncode == 0, output
    assert not socket_path.exists()
    assert '"event": "forecaster.model_loaded"' in output and '"weights_sha256"' in output
    assert '"event": "forecaster.stopped"' in output and '"signal": "SIGTERM"' in output


def test_forecaster_command_refuses_public_tcp_without_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONOS_BOT")}
    cmd = [
        sys.executable,
        "-m",
        "kronos_bot",
        "--config",
        str(REPO_ROOT / "config" / "bot.yaml"),
        "--log-format",
        "json",
        "forecaster",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr
