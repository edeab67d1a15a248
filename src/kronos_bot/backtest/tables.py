"""Report tables as plain data: column names and already rounded cells, rendered by `templates/tables.html.j2`.

Every cell is text chosen here (see `formatting`), so the template only lays out; the numbers themselves
come from summary.json, skill.json, gates.json and trades.csv's rows, never from a second computation.
Score columns say which way is better ("Brier (lower is better)"): a reader should not need the docs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kronos_bot.backtest.formatting import NA, number_text, share_text

LOWER = "lower is better"
HIGHER = "higher is better"


def better(name: str, direction: str) -> str:
    """A column label with its direction: better("Brier", LOWER) -> "Brier (lower is better)"."""
    return f"{name} ({direction})"


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    text_columns: frozenset[str] = field(default_factory=frozenset)  # left-aligned; numbers align right
    scroll: bool = False  # a long table scrolls inside its box instead of stretching the page
    wrap: bool = False  # long text cells wrap (an overview); otherwise every cell stays on one line
    caption: str = ""

    def is_text(self, index: int) -> bool:
        return index == 0 or self.columns[index] in self.text_columns


def cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def pairs_table(pairs: Iterable[tuple[str, Any]]) -> Table:
    """Two columns, name and value: an overview."""
    return Table(
        ("", "value"), [(name, cell(value)) for name, value in pairs], text_columns=frozenset({"value"}), wrap=True
    )


SKILL_COLUMNS = (
    "group",
    "n",
    better("hit rate", HIGHER),
    "95 % interval",
    better("Brier", LOWER),
    "no-change Brier",
    better("BSS", "higher is better, > 0 beats no-change"),
    better("CRPS %", LOWER),
    "no-change CRPS %",
    better("CRPSS", "higher is better, > 0 beats no-change"),
    better("p10-p90 coverage", "closest to 80 % is best"),
)


def skill_table(skill: Mapping[str, Any]) -> Table:
    """The skill numbers of skill.json (overall and per symbol), as `kronos-bot skill` computes them."""
    rows = []
    groups = [("overall", skill.get("overall") or {}), *(skill.get("by_symbol") or {}).items()]
    for name, s in groups:
        if not s:
            continue
        ci = s.get("hit_rate_ci") or [None, None]
        rows.append(
            (
                name,
                cell(s.get("n")),
                share_text(s.get("hit_rate")),
                f"{share_text(ci[0])} - {share_text(ci[1])}",
                number_text(s.get("brier")),
                number_text(s.get("brier_baseline")),
                number_text(s.get("brier_skill"), "{:+.3f}"),
                number_text(s.get("crps")),
                number_text(s.get("crps_baseline")),
                number_text(s.get("crps_skill"), "{:+.3f}"),
                share_text(s.get("coverage_p10_p90")),
            )
        )
    return Table(SKILL_COLUMNS, rows)


def gates_table(gates: Mapping[str, Mapping[str, Any]]) -> Table:
    """gates.json: what each blocking reason's vetoed (shadow) entries would have returned."""
    columns = ("reason / tier", "count", better("mean shadow return %", "higher: the veto cost money"), "win rate")
    rows = [
        (
            key,
            cell(g.get("count")),
            number_text(g.get("mean_return_pct"), "{:+.3f}"),
            share_text(g.get("win_rate")),
        )
        for key, g in gates.items()
    ]
    return Table(columns, rows)


def signed_pct_points(value: float | None) -> str:
    """A number that is already a percentage (return_pct columns): +1.23 %."""
    return NA if value is None else f"{value:+.2f} %"
