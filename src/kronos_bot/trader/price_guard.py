"""Price sanity for exits, pure: is a latest price believable enough to move a stop or sell?

Why: a single bad print (a latest trade at 10x the price) once raised a high-water mark tenfold and the
next, real, tick sold the position "through the trailing stop". A price is *consistent* when it lies
within `max_jump_percent` of the last accepted price, or within the last closed bar's range widened by
as much. A price that is neither is *suspect*: it moves nothing until it is confirmed, either by a second
source (the latest quote's mid, asked for at once) or by the next tick agreeing with it (within the same
percentage). A confirmed move is accepted at once, so a real crash still exits on the tick it is
confirmed; an unconfirmed spike is dropped when prices come back. With no reference at all (right after
a start), the first price needs the same confirmation.

`screen` is a pure function of the symbol's `GuardState`; `PriceBook` keeps one state per symbol, asks the
second source, and logs each suspect episode once when it starts and once when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

HUNDRED = Decimal(100)


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # consistent with the reference: use it
    CONFIRMED = "confirmed"  # was suspect, now confirmed (second source or next tick): use it
    SUSPECT = "suspect"  # held back: moves nothing yet


@dataclass(frozen=True)
class GuardState:
    """What the guard remembers about one symbol."""

    accepted: Decimal | None = None  # the last price that moved stops
    accepted_at: datetime | None = None
    bar_low: Decimal | None = None  # the last closed bar's range, when the entry cycle has seen one
    bar_high: Decimal | None = None
    suspect: Decimal | None = None  # the held-back price of an ongoing episode
    suspect_since: datetime | None = None
    suspect_ticks: int = 0


@dataclass(frozen=True)
class Screened:
    outcome: Outcome
    state: GuardState
    started: bool = False  # this tick opened a suspect episode (log it)
    ended: bool = False  # this tick closed one (log it: confirmed or dropped)

    @property
    def usable(self) -> bool:
        return self.outcome is not Outcome.SUSPECT


def _near(a: Decimal, b: Decimal, jump: Decimal) -> bool:
    return b > 0 and abs(a / b - 1) <= jump


def consistent(state: GuardState, price: Decimal, max_jump_percent: float) -> bool:
    """Within the jump of the last accepted price, or of the last closed bar's range."""
    jump = Decimal(str(max_jump_percent)) / HUNDRED
    if state.accepted is not None and _near(price, state.accepted, jump):
        return True
    if state.bar_low is not None and state.bar_high is not None:
        return state.bar_low * (1 - jump) <= price <= state.bar_high * (1 + jump)
    return False


def reference(state: GuardState) -> Decimal | None:
    """The price a suspect one is compared with in logs (the last accepted, else the bar's midpoint)."""
    if state.accepted is not None:
        return state.accepted
    if state.bar_low is not None and state.bar_high is not None:
        return (state.bar_low + state.bar_high) / 2
    return None


def screen(
    state: GuardState, price: Decimal, now: datetime, max_jump_percent: float, second: Decimal | None = None
) -> Screened:
    """Judge one latest price. `second`: an independent price of the same moment (the quote mid), if any."""
    jump = Decimal(str(max_jump_percent)) / HUNDRED
    episode = state.suspect is not None
    accepted = replace(state, accepted=price, accepted_at=now, suspect=None, suspect_since=None, suspect_ticks=0)
    if consistent(state, price, max_jump_percent):
        return Screened(Outcome.ACCEPTED, accepted, ended=episode)
    confirmed_now = second is not None and _near(price, second, jump)
    if confirmed_now and not episode and reference(state) is None:
        return Screened(Outcome.ACCEPTED, accepted)  # the first price after a start, and the quote agrees
    if confirmed_now or (state.suspect is not None and _near(price, state.suspect, jump)):
        return Screened(Outcome.CONFIRMED, accepted, started=not episode, ended=True)
    held = replace(
        state,
        suspect=price,
        suspect_since=state.suspect_since or now,
        suspect_ticks=state.suspect_ticks + 1,
    )
    return Screened(Outcome.SUSPECT, held, started=not episode)


def note_bar(state: GuardState, low: Decimal, high: Decimal) -> GuardState:
    """The entry cycle saw a new closed bar: its range becomes the second reference."""
    return replace(state, bar_low=low, bar_high=high)
