"""`kronos-bot status`: open positions (HWM, stop, unrealized P&L), the last cycle, forecaster health."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kronos_bot.config import Settings

NAME = "status"
HELP = "show open positions with HWM, stop and unrealized P&L, the last cycle, forecaster health and forecast skill"
LOGS_TO_STDERR = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-prices", action="store_true", help="do not ask the market for latest prices")


# `status` answers during outages: one attempt per question, a short timeout each, never a traceback.
PROBE_TIMEOUT_SECONDS = 2.0


def _forecaster_health(settings: Settings) -> dict[str, Any]:
    """Ask the service (never loads the model here); any failure is reported in place of the answer."""
    from kronos_bot.forecaster.client import ForecasterClient

    if settings.forecaster.mode == "inprocess":
        return {"state": "inprocess", "detail": "forecaster.mode is inprocess: the model loads inside each command"}
    try:
        client = ForecasterClient.from_settings(settings)
    except Exception as exc:
        return {"state": "down", "error": f"{type(exc).__name__}: {exc}"}
    client.max_attempts = 1
    try:
        state = client.probe(timeout=PROBE_TIMEOUT_SECONDS)
        out: dict[str, Any] = {"state": state, "endpoint": client.endpoint}
        if state == "down":
            out["error"] = client.last_probe_error
        elif state == "ready":
            try:
                out["model"] = client.model_info().get("model")
            except Exception as exc:
                out["state"] = "unauthorized" if "401" in str(exc) else "error"
                out["error"] = str(exc)
        return out
    finally:
        client.close()


def _skill(journal: Any, settings: Settings) -> dict[str, Any]:
    """The overall forecast skill (all scored forecasts) and whether the guard would flag Kronos now."""
    from kronos_bot.skill.summary import no_skill, overall_line, summarize
    from kronos_bot.trader.skill_keeper import GUARD_WINDOW, scored_rows

    try:
        rows = scored_rows(journal.skill_forecasts(status="scored"))
    except Exception as exc:  # an older journal or a locked file: said, not raised
        return {"line": f"unavailable: {exc}"}
    overall = summarize(rows)
    # The window the trader's guard judges now (a journal idle for a month has no recent verdict).
    since = datetime.now(UTC) - GUARD_WINDOW
    recent = summarize([r for r in rows if r.origin > since])
    kronos = settings.gates.kronos
    flagged = kronos.skill_guard != "off" and no_skill(recent, kronos.skill_guard_min_n)
    return {
        "line": overall_line(overall),
        "overall": overall,
        "guard": "no_skill" if flagged else "ok",
        "guard_mode": kronos.skill_guard,
    }


def _latest_prices(settings: Settings, symbols: list[str]) -> tuple[dict[str, Decimal], str | None]:
    """Latest trades with one short attempt; (prices, why not) -- an outage is a line, not a wait."""
    from kronos_bot.market.bars import AlpacaMarketData

    quick = settings.model_copy(
        update={
            "bars": settings.bars.model_copy(
                update={
                    "max_attempts": 1,
                    "request_timeout_seconds": min(settings.bars.request_timeout_seconds, 3.0),
                }
            )
        }
    )
    try:
        prices = AlpacaMarketData(quick).latest_prices(symbols)
    except Exception as exc:
        return {}, f"{type(exc).__name__}: {exc}"
    missing = [s for s in symbols if s not in prices]
    return prices, (f"no latest trade for {', '.join(missing)} (market data down or unreachable)" if missing else None)


def main(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from kronos_bot.trader.journal import Journal

    if not Path(settings.journal.path).exists():
        print(f"no journal at {settings.journal.path} yet (the trader has not run with this config)")
        return 0
    try:
        journal = Journal.from_settings(settings)
    except Exception as exc:
        print(f"cannot read the journal at {settings.journal.path}: {type(exc).__name__}: {exc}")
        return 1
    try:
        positions = journal.open_positions()
        prices: dict[str, Decimal] = {}
        down: dict[str, str] = {}
        if positions and not args.no_prices:
            prices, problem = _latest_prices(settings, sorted({p.symbol for p in positions}))
            if problem:
                down["market_data"] = problem
        rows = []
        for p in positions:
            price = prices.get(p.symbol)
            unrealized = (price - p.entry_price) * p.qty if price is not None else None
            rows.append(
                {
                    "symbol": p.symbol,
                    "tier": p.tier,
                    "entry_time": p.entry_time.isoformat(),
                    "entry_price": str(p.entry_price),
                    "qty": str(p.qty),
                    "hwm": str(p.hwm),
                    "stop": str(p.stop_price) if p.stop_price is not None else None,
                    "price": str(price) if price is not None else None,
                    "unrealized_pnl": str(unrealized.quantize(Decimal("0.01"))) if unrealized is not None else None,
                }
            )
        cycles = journal.recent_cycles(limit=1, kind="entry")
        forecaster = _forecaster_health(settings)
        if forecaster.get("state") not in ("ready", "inprocess"):
            down["forecaster"] = str(forecaster.get("error") or forecaster.get("state"))
        status: dict[str, Any] = {
            "broker": settings.effective_broker(),
            "positions": rows,
            "last_cycle": cycles[0] if cycles else None,
            "forecaster": forecaster,
            "skill": _skill(journal, settings),
            "down": down,
        }
    finally:
        journal.close()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(f"broker: {status['broker']}")
    for part, why in down.items():
        print(f"down: {part}: {why}")
    print(f"forecaster: {json.dumps(status['forecaster'], default=str)}")
    last = status["last_cycle"]
    print(f"last cycle: {json.dumps(last, default=str) if last else 'none yet'}")
    skill = status["skill"]
    flag = "  [kronos_no_skill: Brier skill below 0 at 95 %]" if skill.get("guard") == "no_skill" else ""
    print(f"forecast skill: {skill['line']}{flag}")
    if not rows:
        print("open positions: none")
    else:
        print("open positions:")
        print(
            f"  {'symbol':9} {'tier':16} {'entry':>12} {'qty':>14} {'hwm':>12} {'stop':>12} {'price':>12} "
            f"{'unreal.P&L':>10}"
        )
        for r in rows:
            print(
                f"  {r['symbol']:9} {r['tier']!s:16} {r['entry_price']:>12} {r['qty']:>14} {r['hwm']:>12} "
                f"{r['stop']!s:>12} {r['price']!s:>12} {r['unrealized_pnl']!s:>10}"
            )
    return 0
