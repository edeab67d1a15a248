"""`kronos-bot forecast SYMBOL`: live bars through alpaca-py (against the fake Alpaca) into the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import FIXTURES
from tests.trader_support import write_settings

TINY = FIXTURES / "kronos_tiny"
ENTRY_POINT = str(Path(sys.executable).parent / "kronos-bot")


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    return subprocess.run(
        [
            ENTRY_POINT,
            "forecast",
            *args,
            "--config",
            str(config),
            "--model",
            str(TINY / "model"),
            "--tokenizer",
            str(TINY / "tokenizer"),
            "--no-verify",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_forecast_of_a_symbol_uses_its_last_closed_bars(tmp_path: Path, fake_alpaca) -> None:
    last_open = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    fake_alpaca.market.add_hourly_bars("BTC/USD", end=last_open, count=80, start_price=60000.0)
    # A bar still in progress must not be used.
    fake_alpaca.market.add_hourly_bars("ETH/USD", end=last_open, count=5)
    config = write_settings(tmp_path, fake_alpaca.base_url)
    result = run(config, "BTC/USD", "--context", "48", "--top-k", "1", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["settings"]["source"] == "alpaca:BTC/USD"
    assert out["settings"]["context"] == 48
    first = datetime.fromisoformat(out["candles"][0]["timestamp"].replace("Z", "+00:00"))
    assert first == last_open + timedelta(hours=1)
    assert len(out["candles"]) == 4
    assert fake_alpaca.server.requests_to(r"/v1beta3/crypto/us/bars")


def test_forecast_of_a_symbol_without_usable_bars_says_why(tmp_path: Path, fake_alpaca) -> None:
    stale = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=10)
    fake_alpaca.market.add_hourly_bars("SOL/USD", end=stale, count=80)
    config = write_settings(tmp_path, fake_alpaca.base_url)
    result = run(config, "SOL/USD", "--json")
    assert result.returncode == 4  # market data unavailable (kronos_bot.commands.failures.EXIT_MARKET_DATA)
    assert "no usable bars for SOL/USD" in result.stderr
