"""Readable tables of `decision` events, for people watching the bot from a terminal.

Used by `kronos-bot decisions` / `kronos-bot once` (rows from the journal) and by
`scripts/decision_table.py` (rows from `journalctl -u kronos-trader -o cat`), so both read the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

COLUMNS: tuple[tuple[str, int], ...] = (
    ("time", 20),
    ("symbol", 9),
    ("action", 6),
    ("tier", 16),
    ("notional", 9),
    ("tech", 5),
    ("rsi", 5),
    ("sent", 8),
    ("kronos", 11),
    ("conf", 5),
    ("pct", 7),
    ("p_up", 5),
    ("reasons", 0),
)
# Other events worth a line of their own between decision rows.
NOTABLE_EVENTS = (
    "cycle.start",
    "cycle.end",
    "order.submitted",
    "order.filled",
    "order.rejected",
    "position.opened",
    "stop.raised",
    "position.closed",
    "degraded.start",
    "degraded.end",
)


def _num(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return "-"
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return str(value)


def decision_cells(event: Mapping[str, Any]) -> list[str]:
    """The table cells of one decision event (journal row or log line, same keys)."""
    tech = event.get("technical") or {}
    sent = event.get("sentiment") or {}
    kron = event.get("kronos") or {}
    ts = str(event.get("ts") or event.get("time") or event.get("decided_at") or "")[:19].replace("T", " ")
    signal = str(kron.get("signal") or "-")
    if kron.get("actionable"):
        signal += "*"
    pct = kron.get("pct")
    reasons = event.get("reasons") or []
    return [
        ts,
        str(event.get("symbol", "-")),
        str(event.get("action", "-")),
        str(event.get("tier") or "-"),
        _num(event.get("notional"), ".2f"),
        str(tech.get("verdict") or "-"),
        _num(tech.get("rsi"), ".1f"),
        str(sent.get("verdict") or "-") + ("!" if sent.get("veto") else ""),
        signal,
        _num(kron.get("confidence"), ".2f"),
        "-" if pct is None else f"{float(pct) * 100:+.2f}%",
        _num(kron.get("p_up"), ".2f"),
        ", ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons),
    ]


def header() -> str:
    return _line([name for name, _ in COLUMNS])


def _line(cells: list[str]) -> str:
    parts = [cell.ljust(width) if width else cell for cell, (_, width) in zip(cells, COLUMNS, strict=True)]
    return " ".join(parts).rstrip()


def format_decision(event: Mapping[str, Any]) -> str:
    return _line(decision_cells(event))


def format_notable(event: Mapping[str, Any]) -> str:
    """One compact line for a non-decision event: time, name, then its keys."""
    ts = str(event.get("ts", ""))[:19].replace("T", " ")
    skip = {"ts", "event", "level", "logger"}
    details = " ".join(
        f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in event.items() if k not in skip
    )
    return f"{ts.ljust(20)} -- {event.get('event')} {details}"


def render_events(events: Iterable[Mapping[str, Any]], include_notable: bool = True) -> Iterator[str]:
    """Header once, then a row per decision and a line per notable event."""
    yield header()
    for event in events:
        name = event.get("event", "decision")
        if name == "decision":
            yield format_decision(event)
        elif include_notable and name in NOTABLE_EVENTS:
            yield format_notable(event)


def parse_log_lines(stream: TextIO) -> Iterator[dict[str, Any]]:
    """JSON objects from a log stream; lines that are not JSON (e.g. journald notices) are skipped."""
    for line in stream:
        start = line.find("{")
        if start < 0:
            continue
        try:
            obj = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            yield obj
