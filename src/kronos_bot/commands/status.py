"""`kronos-bot status`: open positions (HWM, stop, unrealized P&L), the last cycle, forecaster health."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from typing import Any

from kronos_bot.config import Settings

NAME = "status"
HELP = "show open positions with HWM, stop and unrealized P&L, the last cycle and forecaster health"
LOGS_TO_STDERR = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-prices", action="store_true", help="do not ask the market for latest prices")


def _forecaster_health(settings: Settings) -> dict[str, Any]:
    """Ask the service (never loads the model here)."""
    from kronos_bot.forecaster.client import ForecasterClient

    if settings.forecaster.mode == "inprocess":
        return {"state": "inprocess", "detail": "forecaster.mode is inprocess: the model loads inside each command"}
    client = ForecasterClient.from_settings(settings)
    try:
        state = client.probe()
        out: dict[str, Any] = {"state": state, "endpoint": client.endpoint}
        if state == "down":
            out["error"] = client.last_probe_error
        elif state == "ready":
            info = client.model_info()
            out["model"] = info.get("model")
        return out
    finally:
        client.close()


def main(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from kronos_bot.journal import Journal

    if not Path(settings.journal.path).exists():
        print(f"no journal at {settings.journal.path} yet (the trader has not run with this config)")
        return 0
    journal = Journal.from_settings(settings)
    try:
        positions = journal.open_positions()
        prices: dict[str, Decimal] = {}
        if positions and not args.no_prices:
            try:
                from kronos_bot.market.bars import AlpacaMarketData

                prices = AlpacaMarketData(settings).latest_prices(sorted({p.symbol for p in positions}))
            except Exception as exc:  # status must work during an outage
                print(f"(latest prices unavailable: {exc})")
        rows = []
        for p in positions:
            price = prices.get(p.symbol)
            unrealized = (price - p.entry_price) * p.qty if price is not None else None
            rows.append({
                "symbol": p.symbol, "tier": p.tier, "entry_time": p.entry_time.isoformat(),
                "entry_price": str(p.entry_price), "qty": str(p.qty), "hwm": str(p.hwm),
                "stop": str(p.stop_price) if p.stop_price is not None else None,
                "price": str(price) if price is not None else None,
                "unrealized_pnl": str(unrealized.quantize(Decimal("0.01"))) if unrealized is not None else None,
            })
        cycles = journal.recent_cycles(limit=1, kind="entry")
        status = {
            "broker": settings.effective_broker(),
            "positions": rows,
            "last_cycle": cycles[0] if cycles else None,
            "forecaster": _forecaster_health(settings),
        }
    finally:
        journal.close()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(f"broker: {status['broker']}")
    print(f"forecaster: {json.dumps(status['forecaster'], default=str)}")
    last = status["last_cycle"]
    print(f"last cycle: {json.dumps(last, default=str) if last else 'none yet'}")
    if not rows:
        print("open positions: none")
    else:
        print("open positions:")
        print(f"  {'symbol':9} {'tier':16} {'entry':>12} {'qty':>14} {'hwm':>12} {'stop':>12} {'price':>12} {'unreal.P&L':>10}")
        for r in rows:
            print(f"  {r['symbol']:9} {str(r['tier']):16} {r['entry_price']:>12} {r['qty']:>14} {r['hwm']:>12} "
                  f"{str(r['stop']):>12} {str(r['price']):>12} {str(r['unrealized_pnl']):>10}")
    return 0
