"""The exposure-matched benchmark: buy & hold scaled down to the money the strategy actually had at risk.

Why: the strategy puts $60 positions on a $10k account, so next to a fully invested buy & hold its equity
is a flat line and the comparison says only "the market moved". Holding the same average fraction of
equity in the market, and the rest in cash, asks the fair question: did the trades beat just holding that
much?
"""

from __future__ import annotations

from collections.abc import Sequence


def exposure_matched(benchmark: Sequence[float], fraction: float) -> list[float]:
    """Buy & hold scaled to `fraction` of the starting value, the rest held as cash (no interest):

        matched[t] = B[0] x (1 - f) + B[t] x f  =  B[0] x (1 + f x (B[t] / B[0] - 1))

    where B is the fully invested buy & hold value (the equal-weight curve of the run, which starts at the
    starting cash) and f is the strategy's average invested fraction of equity (summary.json
    `exposure.avg_invested_fraction`: the mean over the hours of invested / equity). Bought once at the
    start and never rebalanced, like the plain buy & hold; before fees. So its return is f x the plain
    return, and its drawdowns are those of the plain curve damped by the cash.
    """
    if not benchmark:
        return []
    start = benchmark[0]
    return [start * (1.0 - fraction) + value * fraction for value in benchmark]
