"""The installed `kronos-bot` entry point: version, help, config check and refusal on bad config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kronos_bot.cli import COMMAND_MODULES
from tests.conftest import SHIPPED_CONFIG

ENTRY_POINT = shutil.which("kronos-bot", path=str(Path(sys.executable).parent))


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert ENTRY_POINT, "the kronos-bot console script is not installed next to this Python"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    full_env.update(env or {})
    return subprocess.run([ENTRY_POINT, *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("kronos-bot ")


def test_every_registered_command_has_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMAND_MODULES:
        assert name in result.stdout
        sub = run_cli(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: kronos-bot" in sub.stdout


def test_config_check_prints_effective_config_without_secrets() -> None:
    result = run_cli(
        "config",
        "check",
        "--config",
        str(SHIPPED_CONFIG),
        env={"ALPACA_API_KEY": "PKSECRETKEYVALUE", "ALPACA_SECRET_KEY": "verysecretvalue123"},
    )
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["engine"]["tiers"] == {"triple_confirmed": 1.0, "kronos_only": 0.6}
    assert printed["alpaca_api_key"] == "**********"
    assert "PKSECRETKEYVALUE" not in result.stdout + result.stderr
    assert "verysecretvalue123" not in result.stdout + result.stderr


def test_global_config_option_before_the_command_works_too() -> None:
    result = run_cli("--config", str(SHIPPED_CONFIG), "config", "check", "--json")
    assert result.returncode == 0, result.stderr
    assert '"fingerprint"' in result.stdout


def test_unknown_key_refuses_to_start(tmp_path: Path) -> None:
    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    data["risk"]["max_open_positon"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = run_cli("config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "risk.max_open_positon: unknown key" in result.stderr
    assert result.stdout == ""


def test_bad_value_refuses_to_start(tmp_path: Path) -> None:
    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    data["gates"]["kronos"]["min_confidence"] = 7
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = run_cli("--config", str(bad), "config", "check")
    assert result.returncode == 2
    assert "gates.kronos.min_confidence" in result.stderr


@pytest.mark.parametrize("command", [c for c in ("run", "once", "status") if c in COMMAND_MODULES])
def test_bad_config_stops_every_command_before_it_starts(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("symbols: [NOPE]\n")
    result = run_cli(command, "--config", str(bad))
    assert result.returncode == 2
    assert "symbols" in result.stderr and "refusing to start" in result.stderr


def test_config_from_env_var(tmp_path: Path) -> None:
    result = run_cli("config", "check", env={"KRONOS_BOT_CONFIG": str(tmp_path / "missing.yaml")})
    assert result.returncode == 2
    assert "missing.yaml" in result.stderr and "not found" in result.stderr
