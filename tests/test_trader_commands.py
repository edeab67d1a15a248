"""Operating the bot from a terminal: `once`, `status`, `decisions` and the journald table helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from kronos_bot.trader.daemon import build_trader_parts
from kronos_bot.trader.decision_table import parse_log_lines, render_events
from tests.conftest import FIXTURES, REPO_ROOT
from tests.trader_support import CYCLE_NOW, SYMBOLS, ScriptedForecaster, load_market, write_settings

ENTRY_POINT = str(Path(sys.executable).parent / "kronos-bot")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    return subprocess.run(
        [ENTRY_POINT, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout
    )


def populate_journal(tmp_path: Path, fake) -> Path:
    """One traded cycle (BTC enters at the kronos_only tier) written to the journal of a config file."""
    load_market(fake)
    config = write_settings(tmp_path, fake.base_url)
    from kronos_bot.config import load_settings

    parts = build_trader_parts(
        load_settings(config), clock=lambda: CYCLE_NOW, forecaster_factory=lambda: ScriptedForecaster({"BTC/USD": 0.02})
    )
    try:
        parts.cycle.run(trade=True)
    finally:
        parts.close()
    return config


def test_decisions_prints_the_journal_as_a_table(tmp_path: Path, fake_alpaca) -> None:
    config = populate_journal(tmp_path, fake_alpaca)
    result = cli("decisions", "--config", str(config), "--since", "2024-12-01")
    assert result.returncode == 0, result.stderr
    legend, columns, *rows = result.stdout.strip().splitlines()
    assert legend.startswith("markers:") and "SKIP rows have no tier" in legend
    assert columns.split()[:3] == ["time", "symbol", "action"]
    assert sorted(row.split()[2] for row in rows) == sorted(SYMBOLS)
    btc = next(row for row in rows if "BTC/USD" in row)
    assert "ENTER" in btc and "kronos_only" in btc and "60.00" in btc
    only_eth = cli("decisions", "--config", str(config), "--since", "2024-12-01", "--symbol", "ETH/USD")
    assert [r.split()[2] for r in only_eth.stdout.strip().splitlines()[2:]] == ["ETH/USD"]


def test_status_shows_the_open_position_with_hwm_and_stop(tmp_path: Path, fake_alpaca) -> None:
    config = populate_journal(tmp_path, fake_alpaca)
    result = cli("status", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["broker"] == "sim"
    (position,) = status["positions"]
    assert position["symbol"] == "BTC/USD" and position["tier"] == "kronos_only"
    assert float(position["hwm"]) >= float(position["entry_price"])
    assert position["stop"] is not None
    assert position["price"] is not None and position["unrealized_pnl"] is not None
    assert status["last_cycle"]["status"] == "ok"
    assert status["forecaster"]["state"] == "inprocess"
    readable = cli("status", "--config", str(config), "--no-prices")
    assert "BTC/USD" in readable.stdout and "kronos_only" in readable.stdout


def test_once_runs_one_cycle_with_the_tiny_model_and_places_no_order_without_trade(tmp_path: Path, fake_alpaca) -> None:
    last_open = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for i, symbol in enumerate(SYMBOLS):
        fake_alpaca.market.add_hourly_bars(symbol, end=last_open, count=90, start_price=50.0 * (i + 1))
        fake_alpaca.market.set_latest_trade(symbol, fake_alpaca.market.bars[symbol][-1].c)
    tiny = FIXTURES / "kronos_tiny"
    config = write_settings(
        tmp_path,
        fake_alpaca.base_url,
        forecaster={
            "mode": "inprocess",
            "model": str(tiny / "model"),
            "tokenizer": str(tiny / "tokenizer"),
            "model_revision": None,
            "tokenizer_revision": None,
            "verify_sha256": False,
            "threads": 1,
        },
        **{"gates.kronos": {"threshold_percent": 0.0, "min_confidence": 0.0, "top_k": 1}},
    )
    result = cli("once", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [d["symbol"] for d in report["decisions"]] == list(SYMBOLS)
    assert all(d["kronos"]["signal"] in ("UP", "DOWN", "FLAT") for d in report["decisions"])
    assert report["entries"] == []
    if any(d["action"] == "ENTER" for d in report["decisions"]):
        table = cli("once", "--config", str(config))
        assert "no orders placed" in table.stdout
    assert not fake_alpaca.server.requests_to(r"/v2/orders", method="POST")


def test_decision_table_script_reads_journalctl_output(tmp_path: Path) -> None:
    lines = [
        "-- Journal begins at ... --",
        json.dumps({"event": "cycle.start", "ts": "2025-01-01T00:00:30Z", "cycle_id": "c1"}),
        json.dumps(
            {
                "event": "decision",
                "ts": "2025-01-01T00:00:31Z",
                "symbol": "BTC/USD",
                "action": "ENTER",
                "tier": "kronos_only",
                "notional": "60.00",
                "reasons": ["kronos_only"],
                "technical": {"verdict": "FAIL", "rsi": 55.2},
                "sentiment": {"verdict": "NO_DATA", "veto": False},
                "kronos": {"signal": "UP", "actionable": True, "confidence": 0.8, "pct": 0.016, "p_up": 1.0},
            }
        ),
        "not json at all",
        json.dumps({"event": "position.opened", "ts": "2025-01-01T00:00:32Z", "symbol": "BTC/USD", "qty": "0.0006"}),
    ]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "decision_table.py"), str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("markers:") and out[1].startswith("time")
    decision_row = next(line for line in out if "BTC/USD" in line and "ENTER" in line)
    assert "UP*" in decision_row and "+1.60%" in decision_row and "55.2" in decision_row
    assert any("position.opened" in line for line in out)
    with open(log) as stream:
        rendered = list(render_events(parse_log_lines(stream), include_notable=False))
    assert len(rendered) == 3  # legend, header and the one decision


def test_cli_yaml_of_the_e2e_style_config_is_valid(tmp_path: Path) -> None:
    """write_settings produces configs the real loader accepts (guards the helpers above)."""
    path = write_settings(tmp_path, "http://127.0.0.1:1")
    assert yaml.safe_load(path.read_text())["journal"]["path"].endswith("journal.sqlite")
    assert cli("config", "check", "--config", str(path)).returncode == 0
