"""The trader side never imports torch: proven in a fresh interpreter, module by module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Everything the trader process imports: every module of the trader, broker, market, gates, notify and skill packages
# (found on disk, so a new module is covered the day it is written), the forecaster's client side, the
# shared root modules and the trader's commands.
TRADER_PACKAGES = ("trader", "broker", "market", "gates", "notify", "skill")
TRADER_MODULES = [
    *(
        "kronos_bot." + ".".join(path.relative_to(REPO_ROOT / "src" / "kronos_bot").with_suffix("").parts)
        for package in TRADER_PACKAGES
        for path in sorted((REPO_ROOT / "src" / "kronos_bot" / package).glob("*.py"))
        if path.name != "__init__.py"
    ),
    *(f"kronos_bot.{package}" for package in TRADER_PACKAGES),
    "kronos_bot.forecaster",
    "kronos_bot.forecaster.client",
    "kronos_bot.forecaster.factory",
    "kronos_bot.forecaster.schemas",
    "kronos_bot.forecast_types",
    "kronos_bot.config",
    "kronos_bot.domain",
    "kronos_bot.logs",
    "kronos_bot.retry",
    "kronos_bot.systemd",
    "kronos_bot.cli",
    "kronos_bot.commands.run",
    "kronos_bot.commands.once",
    "kronos_bot.commands.status",
    "kronos_bot.commands.decisions",
    "kronos_bot.commands.profit",
    "kronos_bot.commands.notify_test",
]

PROBE = r"""
import importlib, importlib.util, json, sys
imported, missing = [], []
for name in json.loads(sys.argv[1]):
    parent = name.rpartition(".")[0]
    parent_missing = parent and parent not in sys.modules and importlib.util.find_spec(parent) is None
    if parent_missing or importlib.util.find_spec(name) is None:
        missing.append(name)
        continue
    importlib.import_module(name)
    imported.append(name)
# Touch the lazy names too: they must stay torch-free.
from kronos_bot.forecaster import ForecasterClient, make_forecaster  # noqa: F401
# `kronos-bot run` builds the parser, which imports every command module (all torch-free at import).
from kronos_bot.cli import build_parser
build_parser()
heavy = sorted(m for m in ("torch", "safetensors") if m in sys.modules)
print(json.dumps({"imported": imported, "missing": missing, "heavy": heavy,
                  "fastapi": "fastapi" in sys.modules, "uvicorn": "uvicorn" in sys.modules}))
"""


def test_trader_side_imports_leave_torch_out() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(TRADER_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "kronos_bot.forecaster.client" in report["imported"]
    assert "kronos_bot.forecaster.factory" in report["imported"]
    assert report["heavy"] == [], f"trader-side imports pulled in {report['heavy']}"
    # The client side does not need the server stack either.
    assert not report["fastapi"] and not report["uvicorn"]
    assert report["missing"] == [], f"listed trader modules that do not exist: {report['missing']}"
    assert "kronos_bot.trader.daemon" in report["imported"] and "kronos_bot.trader.backstops" in report["imported"]
