"""What the trader says about itself when it starts, and every so often after: the banner and the heartbeat.

A newcomer who runs `make run` must see at once what is running (mode, broker, model, data, symbols,
journal) and when something will happen (the next entry cycle, the next exit tick); a user tailing
journald hours later must see that the bot is alive without waiting for a trade. Both are built here
from plain facts (pure functions); the daemon gathers the facts and logs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kronos_bot.config import Settings

DATA_HOST = "data.alpaca.markets"


@dataclass(frozen=True)
class StartupFacts:
    version: str
    mode: str  # dry-run | paper | live
    broker: str
    forecaster_mode: str
    model: str
    data_source: str
    symbols: tuple[str, ...]
    journal: str
    next_entry_cycle: datetime | None
    next_exit_tick: datetime | None
    run_on_start: bool


def startup_facts(
    settings: Settings,
    *,
    version: str,
    mode: str,
    next_entry_cycle: datetime | None,
    next_exit_tick: datetime | None,
) -> StartupFacts:
    fs = settings.forecaster
    return StartupFacts(
        version=version,
        mode=mode,
        broker=settings.effective_broker(),
        forecaster_mode=fs.mode,
        model=f"{fs.model} + {fs.tokenizer}",
        data_source=f"Alpaca crypto bars ({settings.bars.feed}) from {settings.bars.data_url_override or DATA_HOST}",
        symbols=tuple(settings.symbols),
        journal=str(settings.journal.path),
        next_entry_cycle=next_entry_cycle,
        next_exit_tick=next_exit_tick,
        run_on_start=settings.schedule.run_on_start,
    )


def _utc(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when is not None else "not scheduled"


def banner_fields(facts: StartupFacts) -> dict[str, Any]:
    """The `trader.banner` event's keys."""
    return {
        "version": facts.version,
        "mode": facts.mode,
        "broker": facts.broker,
        "forecaster_mode": facts.forecaster_mode,
        "model": facts.model,
        "data": facts.data_source,
        "symbols": list(facts.symbols),
        "journal": facts.journal,
        "next_entry_cycle": facts.next_entry_cycle,
        "next_exit_tick": facts.next_exit_tick,
    }


def banner_lines(facts: StartupFacts) -> list[str]:
    """The short block shown on a terminal (the same facts as the event)."""
    return [
        f"kronos-bot {facts.version}: trader starting in {facts.mode.upper()} mode",
        f"  broker      {facts.broker}",
        f"  forecaster  {facts.forecaster_mode}, model {facts.model}",
        f"  data        {facts.data_source}",
        f"  symbols     {', '.join(facts.symbols)}",
        f"  journal     {facts.journal}",
        f"  next entry  {_utc(facts.next_entry_cycle)}" + ("  (run on start)" if facts.run_on_start else ""),
        f"  next exit   {_utc(facts.next_exit_tick)}",
        "  (Ctrl-C stops; `kronos-bot status` in another terminal shows equity, positions and P&L)",
    ]


def heartbeat_fields(
    *,
    open_symbols: Sequence[str],
    degraded: Sequence[str],
    next_cycle: datetime | None,
    last_cycle: datetime | None,
    last_status: str | None,
    uptime_seconds: float,
) -> dict[str, Any]:
    """The `heartbeat` event's keys: alive, what is held, what is broken, when the next decision comes."""
    return {
        "open_positions": len(open_symbols),
        "symbols_held": list(open_symbols),
        "degraded": list(degraded),
        "next_cycle": next_cycle,
        "last_cycle": last_cycle,
        "last_cycle_status": last_status,
        "uptime_seconds": round(uptime_seconds),
    }
