"""Readable tables of `decision` events, for people watching the bot from a terminal.

Used by `kronos-bot decisions` / `kronos-bot once` (rows from the journal or the cycle) and by
`kronos-bot logs` (rows from `journalctl -u kronos-trader -o cat`), so all of them read the same.
A log is read line by line and a line is never trusted: text, journald notices, cut or garbled JSON and
events with unexpected value types are shown or skipped, never an exception that stops the stream.
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
ACTIONABLE_MARK = "*"
VETO_MARK = "!"
NO_VALUE = "-"
NOTABLE_MARK = "--"
TEXT_MARK = "??"
# The markers of a decision row, and of the lines a log adds between rows; printed once above the columns.
ROW_LEGEND = (
    f"markers: kronos UP{ACTIONABLE_MARK}/FLAT{ACTIONABLE_MARK}/DOWN{ACTIONABLE_MARK} = actionable signal "
    f"(confidence >= min_confidence; only UP{ACTIONABLE_MARK} enters), sent BEARISH{VETO_MARK} = a very bad "
    f"recent headline vetoed, {NO_VALUE} = none (SKIP rows have no tier)"
)
LINE_LEGEND = f"; {NOTABLE_MARK} = other event (cycle, order, position, outage), {TEXT_MARK} = not a JSON log line"
TEXT_LINE_WIDTH = 200


def _num(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return NO_VALUE
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return str(value)


def _percent(value: Any) -> str:
    """A fraction as a signed percentage (0.016 -> +1.60%); anything else as it is."""
    if value is None or value == "":
        return NO_VALUE
    try:
        return f"{round(float(value) * 100, 2) + 0.0:+.2f}%"  # + 0.0: a tiny fall reads +0.00%, not -0.00%
    except (TypeError, ValueError):
        return str(value)


def _section(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A gate's sub-object; missing or malformed (a hand-edited or foreign line) reads as empty."""
    value = event.get(key)
    return value if isinstance(value, Mapping) else {}


def decision_cells(event: Mapping[str, Any]) -> list[str]:
    """The table cells of one decision event (journal row or log line, same keys)."""
    tech = _section(event, "technical")
    sent = _section(event, "sentiment")
    kron = _section(event, "kronos")
    ts = str(event.get("ts") or event.get("time") or event.get("decided_at") or "")[:19].replace("T", " ")
    action = str(event.get("action", NO_VALUE))
    signal = str(kron.get("signal") or NO_VALUE)
    if kron.get("actionable"):
        signal += ACTIONABLE_MARK
    # A SKIP's tier is only the tier its signal would have had (the risk rules said no): not a position's.
    tier = None if action == "SKIP" else event.get("tier")
    reasons = event.get("reasons") or []
    return [
        ts,
        str(event.get("symbol", NO_VALUE)),
        action,
        str(tier or NO_VALUE),
        _num(event.get("notional"), ".2f"),
        str(tech.get("verdict") or NO_VALUE),
        _num(tech.get("rsi"), ".1f"),
        str(sent.get("verdict") or NO_VALUE) + (VETO_MARK if sent.get("veto") else ""),
        signal,
        _num(kron.get("confidence"), ".2f"),
        _percent(kron.get("pct")),
        _num(kron.get("p_up"), ".2f"),
        ", ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons),
    ]


def heading_lines(with_other_lines: bool = False) -> list[str]:
    """The legend, then the column names; `with_other_lines` when notable events or text lines may follow."""
    legend = ROW_LEGEND + (LINE_LEGEND if with_other_lines else "")
    return [legend, _line([name for name, _ in COLUMNS])]


def header() -> str:
    """The legend and the column names as one printable block (what `kronos-bot decisions` prints first)."""
    return "\n".join(heading_lines())


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
        f"{k}={json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}"
        for k, v in event.items()
        if k not in skip
    )
    return f"{ts.ljust(20)} {NOTABLE_MARK} {event.get('event')} {details}"


def format_text_line(line: str) -> str:
    """A log line that is not a JSON event (a traceback, a journald notice, a cut line), marked and cut short
    so it is seen, e.g. when the trader crashed, but never mistaken for a row."""
    text = line.rstrip("\r\n")
    if len(text) > TEXT_LINE_WIDTH:
        text = text[: TEXT_LINE_WIDTH - 3] + "..."
    return f"{'':20} {TEXT_MARK} {text}"


def format_event(event: Mapping[str, Any], include_notable: bool = True) -> str | None:
    """The table line of one event: a row for a decision, a line for a notable event, else None."""
    name = event.get("event", "decision")
    if name == "decision":
        return format_decision(event)
    if include_notable and name in NOTABLE_EVENTS:
        return format_notable(event)
    return None


def render_events(events: Iterable[Mapping[str, Any]], include_notable: bool = True) -> Iterator[str]:
    """Legend and header once, then a row per decision and a line per notable event."""
    yield from heading_lines(with_other_lines=include_notable)
    for event in events:
        line = format_event(event, include_notable)
        if line is not None:
            yield line


def parse_log_line(line: str) -> dict[str, Any] | None:
    """The JSON event of one log line, or None when it holds none.

    The object may follow a prefix (`journalctl -o short` puts time and unit first); a cut, garbled or
    absurdly nested line is None like any other text.
    """
    start = line.find("{")
    if start < 0:
        return None
    try:
        obj = json.loads(line[start:])
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def parse_log_lines(stream: TextIO) -> Iterator[dict[str, Any]]:
    """JSON objects from a log stream; lines that are not JSON (e.g. journald notices) are skipped."""
    for line in stream:
        event = parse_log_line(line)
        if event is not None:
            yield event
