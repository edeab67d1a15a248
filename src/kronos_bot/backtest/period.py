"""The replayed period: hourly bar boundaries from `start` to `end`, both tz-aware UTC.

Why hour boundaries: the live entry cycle acts just after each hourly bar closes, so a replay step is one
bar close `t`: the decision at `t` sees the bars that closed at or before `t`, and its orders fill at the
open of the bar that starts at `t`. A bare date in `--to` means the END of that day (inclusive dates read
naturally: `--from 2024-07-01 --to 2024-12-31` is the second half of 2024).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Period:
    """Bar boundaries start, start+1h, ..., end (end - start a whole number of hours, at least one)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"period {name} must be timezone-aware, got {value!r}")
            if value != floor_hour(value):
                raise ValueError(f"period {name} must be on the hour, got {value.isoformat()}")
        if self.end <= self.start:
            raise ValueError(f"period end {self.end.isoformat()} is not after its start {self.start.isoformat()}")

    @property
    def hours(self) -> int:
        """Number of bars inside the period (boundaries minus one)."""
        return int((self.end - self.start) / HOUR)

    def boundaries(self) -> Iterator[datetime]:
        t = self.start
        while t <= self.end:
            yield t
            t += HOUR

    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} -> {self.end:%Y-%m-%d %H:%M} UTC"


def floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def parse_time(value: str, *, end_of_day: bool = False) -> datetime:
    """ISO date or time, UTC when naive. A bare date is midnight, or the next midnight with `end_of_day`.

    Times off the hour are floored to the hour (a bar boundary).
    """
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO date or time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    bare_date = len(text) <= 10
    if bare_date and end_of_day:
        parsed += timedelta(days=1)
    return floor_hour(parsed)
