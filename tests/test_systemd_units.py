"""The systemd units: valid for systemd-analyze, wired together as the design says, hardened."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

UNITS = REPO_ROOT / "systemd"
FORECASTER = UNITS / "kronos-forecaster.service"
TRADER = UNITS / "kronos-trader.service"
HARDENING = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
             "RestrictAddressFamilies", "ReadWritePaths", "MemoryMax")


def parse(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keep systemd's CamelCase keys
    parser.read(path)
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this venv's entry point.
    entry_point = Path(sys.executable).parent / "kronos-bot"
    for unit in (FORECASTER, TRADER):
        text = unit.read_text().replace("/opt/kronos-bot/venv/bin/kronos-bot", str(entry_point))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / FORECASTER.name), str(tmp_path / TRADER.name)],
        capture_output=True, text=True, timeout=60,
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "kronos" in line and "Failed to" not in line or "Unknown" in line]
    assert result.returncode == 0, result.stderr
    assert problems == [], problems


def test_both_units_are_notify_hardened_and_run_as_dedicated_user() -> None:
    for unit in (FORECASTER, TRADER):
        service = parse(unit)["Service"]
        assert service["Type"] == "notify"
        assert service["User"] == "kronos-bot"
        for key in HARDENING:
            assert key in service, f"{unit.name} lacks {key}"
        assert service["ProtectSystem"] == "strict"


def test_trader_requires_the_forecaster_and_uses_the_service_mode() -> None:
    trader = parse(TRADER)
    assert "kronos-forecaster.service" in trader["Unit"]["Requires"]
    assert "kronos-forecaster.service" in trader["Unit"]["After"]
    service = trader["Service"]
    assert "WatchdogSec" in service and service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "kronos-bot"
    assert service["EnvironmentFile"].endswith("kronos-bot.env")
    assert "KRONOS_BOT__FORECASTER__MODE=service" in TRADER.read_text()
    assert service["ExecStart"].endswith("kronos-bot run --log-format json")


def test_forecaster_socket_directory_matches_the_config_default() -> None:
    from kronos_bot.config import ForecasterSettings

    service = parse(FORECASTER)["Service"]
    assert service["RuntimeDirectory"] == "kronos-bot"
    assert ForecasterSettings().socket_path.startswith("/run/kronos-bot/")
    assert "/run/kronos-bot" in service["ReadWritePaths"]
