"""A kronos-bot subprocess for end-to-end tests: its JSON log lines collected from a file, waited on."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Proc:
    """A kronos-bot subprocess whose JSON log lines are collected from a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        entry = Path(sys.executable).parent / "kronos-bot"
        self.popen = subprocess.Popen([str(entry), *args], stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate(self.events())
            if found:
                return found
            if self.popen.poll() is not None:
                break
            time.sleep(0.2)
        tail = "\n".join(self.log_path.read_text().splitlines()[-40:])
        raise AssertionError(f"{self.name}: timed out waiting for {what} (rc={self.popen.poll()})\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        finally:
            self._log.close()
