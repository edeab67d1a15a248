"""`kronos-bot status`: open positions (HWM, stop, unrealized P&L), the last cycle, forecaster health."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kronos_bot.config import Settings

NAME = "status"
HELP = "show open positions with HWM, stop and unrealized P&L, the last cycle, forecaster health and forecast skill"
LOGS_TO_STDERR = True
EXAMPLE = "example: kronos-bot status --json --no-prices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-prices", action="store_true", help="do not ask the market for latest prices")


# `status` answers during outages: one attempt per question, a short timeout each, never a traceback.
PROBE_TIMEOUT_SECONDS = 2.0
# Everything `status` asks runs at once; what has not answered by then is reported as not answering.
STATUS_DEADLINE_SECONDS = 4.0


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


def _quick(settings: Settings) -> Settings:
    """The settings with one attempt and a short timeout for every request `status` makes."""
    timeout = min(PROBE_TIMEOUT_SECONDS, 3.0)
    return settings.model_copy(
        update={
            "bars": settings.bars.model_copy(update={"max_attempts": 1, "request_timeout_seconds": timeout}),
            "broker": settings.broker.model_copy(update={"max_attempts": 1, "request_timeout_seconds": timeout}),
        }
    )


def _latest_prices(settings: Settings, symbols: list[str]) -> tuple[dict[str, Decimal], str | None]:
    """Latest trades with one short attempt; (prices, why not) -- an outage is a line, not a wait."""
    from kronos_bot.market.bars import AlpacaMarketData

    try:
        prices = AlpacaMarketData(_quick(settings)).latest_prices(symbols)
    except Exception as exc:
        return {}, f"{type(exc).__name__}: {exc}"
    missing = [s for s in symbols if s not in prices]
    return prices, (f"no latest trade for {', '.join(missing)} (market data down or unreachable)" if missing else None)


def _broker_facts(settings: Settings, journal: Any, symbols: list[str], prices: dict[str, Decimal]) -> dict[str, Any]:
    """The account and the open positions' price increments, asked once each (never raises)."""
    from kronos_bot.broker.factory import make_broker

    out: dict[str, Any] = {"increments": {}}
    try:
        broker = make_broker(_quick(settings), journal, prices.get)
        out["account"] = broker.get_account()
        for symbol in symbols:
            out["increments"][symbol] = broker.get_asset(symbol).price_increment
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _in_parallel(jobs: dict[str, Callable[[], Any]], deadline_seconds: float) -> tuple[dict[str, Any], list[str]]:
    """Run the probes at once in daemon threads; (answers, names still running at the deadline).

    Daemon threads: a probe stuck in a connect can neither hold up the answer nor the process's exit.
    """
    answers: dict[str, Any] = {}
    threads = []
    for name, job in jobs.items():

        def run(name: str = name, job: Callable[[], Any] = job) -> None:
            try:
                answers[name] = job()
            except Exception as exc:  # each probe reports its own failures; this is the last net
                answers[name] = exc

        thread = threading.Thread(target=run, name=f"status-{name}", daemon=True)
        thread.start()
        threads.append((name, thread))
    end = time.monotonic() + deadline_seconds
    for _name, thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return answers, [name for name, thread in threads if thread.is_alive()]


def _trader_state(state: dict[str, Any]) -> dict[str, Any]:
    """The trader's own record, with `gone` when it says running but its process no longer exists."""
    trader = dict(state) if state else {"state": "never started with this journal"}
    pid = trader.get("pid")
    if trader.get("state") == "running" and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            trader["state"] = "gone"
        except PermissionError:
            pass  # alive, under another user (the service account)
    return trader


def _last_cycle(journal: Any) -> dict[str, Any] | None:
    cycles = journal.recent_cycles(limit=1, kind="entry")
    if not cycles:
        return None
    c = cycles[0]
    return {
        "started_at": c["started_at"],
        "ended_at": c["ended_at"],
        "duration_seconds": round(c["duration_ms"] / 1000, 3) if c.get("duration_ms") is not None else None,
        "status": c["status"],
        "decisions": journal.cycle_actions(c["id"]),
    }


def _next_cycle(settings: Settings, now: datetime) -> datetime | None:
    from apscheduler.triggers.cron import CronTrigger

    sched = settings.schedule
    if sched.entry_interval_seconds:
        return None
    trigger = CronTrigger(minute=sched.entry_minutes, second=sched.entry_offset_seconds, timezone=UTC)
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.commands.journal_reader import journal_missing, reading_journal
    from kronos_bot.trader.daemon import trading_mode
    from kronos_bot.trader.status_report import StatusFacts, pnl_facts, status_document, status_lines

    if journal_missing(settings.journal.path):
        return 0
    now = datetime.now(UTC)
    with reading_journal(settings.journal.path) as journal:
        positions = journal.open_positions()
        symbols = sorted({p.symbol for p in positions})
        runtime = journal.runtime_state()
        facts = StatusFacts(
            now=now,
            mode=trading_mode(settings),
            broker=settings.effective_broker(),
            trader=_trader_state(runtime.get("trader", {})),
            positions=positions,
            pnl=pnl_facts(journal.closed_positions(), now),
            last_cycle=_last_cycle(journal),
            next_cycle=_next_cycle(settings, now),
            skill=_skill(journal, settings),
        )
        if facts.trader.get("state") == "running":
            facts.degraded = dict(runtime.get("degraded", {}).get("active", {}))
        prices: dict[str, Decimal] = {}
        jobs: dict[str, Callable[[], Any]] = {"forecaster": lambda: _forecaster_health(settings)}
        if symbols and not args.no_prices:
            jobs["prices"] = lambda: _latest_prices(settings, symbols)
        if settings.effective_broker() == "alpaca":
            jobs["broker"] = lambda: _broker_facts(settings, journal, symbols, prices)
        answers, late = _in_parallel(jobs, STATUS_DEADLINE_SECONDS)
        for name in late:
            facts.down[name] = f"no answer within {STATUS_DEADLINE_SECONDS:.0f} s"
        if isinstance(answers.get("prices"), tuple):
            prices.update(answers["prices"][0])
            if answers["prices"][1]:
                facts.down["market_data"] = answers["prices"][1]
        if settings.effective_broker() == "sim":  # local: valued with the prices just read
            answers["broker"] = _broker_facts(settings, journal, symbols, prices)
        facts.prices = prices
        broker = answers.get("broker")
        if isinstance(broker, dict):
            facts.account = broker.get("account")
            facts.increments = broker.get("increments", {})
            facts.account_source = "broker" if facts.account is not None else None
            if broker.get("error"):
                facts.down["broker"] = broker["error"]
        if facts.account is None:
            _fallback_account(facts, runtime.get("account"))
        forecaster = answers.get("forecaster")
        facts.forecaster = forecaster if isinstance(forecaster, dict) else {"state": "no answer"}
        if facts.forecaster.get("state") not in ("ready", "inprocess"):
            facts.down["forecaster"] = str(facts.forecaster.get("error") or facts.forecaster.get("state"))
    doc = status_document(facts)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    for line in status_lines(doc, facts.increments):
        print(line)
    return 0


def _fallback_account(facts: Any, saved: dict[str, Any] | None) -> None:
    """The trader's last account reading when the broker could not be asked now."""
    from kronos_bot.broker.base import Account

    if not saved or not saved.get("equity"):
        facts.down.setdefault("account", "no account reading yet")
        return
    facts.account = Account(
        cash=Decimal(saved["cash"]), buying_power=Decimal(saved["buying_power"]), equity=Decimal(saved["equity"])
    )
    facts.account_source = f"the trader's reading at {saved.get('at', saved.get('updated_at'))}"
