"""Shared pytest set-up: opt-in markers for tests that need the real network, and fixture plugins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
SHIPPED_CONFIG = REPO_ROOT / "config" / "bot.yaml"

# Fixture modules shared across test files (each owned by the part of the bot it fakes).
pytest_plugins: list[str] = ["tests.fakealpaca.fixtures"]

_OPT_IN = {
    "hub": ("--run-hub", "KRONOS_BOT_RUN_HUB", "needs the Hugging Face Hub"),
    "alpaca_live": ("--run-alpaca-live", "KRONOS_BOT_RUN_ALPACA_LIVE", "needs a real Alpaca paper account"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    for option, env_var, why in _OPT_IN.values():
        parser.addoption(option, action="store_true", default=False, help=f"run tests that {why} (or set {env_var}=1)")
    parser.addoption(
        "--crash-kills",
        type=int,
        default=None,
        help="kills in the crash campaign (default 14, about two minutes; or KRONOS_BOT_CRASH_KILLS)",
    )
    parser.addoption("--crash-seed", type=int, default=None, help="random seed of the crash campaign (default 12)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker, (option, env_var, why) in _OPT_IN.items():
        if config.getoption(option) or os.environ.get(env_var) == "1":
            continue
        skip = pytest.mark.skip(reason=f"{why}: pass {option} or set {env_var}=1")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's own keys, .env, config path or Hub settings, or reaches the network.

    Tests run inside their own temporary directory, so a developer's `.env` in the repo is never read and
    relative paths (journal, caches) land in tmp; use REPO_ROOT / FIXTURES / SHIPPED_CONFIG for repo files.
    """
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("KRONOS_BOT") or name in (
            "ALPACA_API_KEY",
            "ALPACA_SECRET_KEY",
            "HF_TOKEN",
            "APCA_API_KEY_ID",
            "APCA_API_SECRET_KEY",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Logging configured by one test (level filter, stream) must not leak into the next one.
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
