"""Performance statistics of an equity curve and a list of trades. Pure functions, floats in and out.

Definitions (stated here because every one of them has variants):
- returns: simple returns between consecutive hourly equity values;
- period return: last / first - 1;
- drawdown at t: 1 - equity[t] / max(equity[..t]); max drawdown: its largest value (0.25 = -25 %);
- Sharpe: mean / sample std (ddof 1) of the hourly returns x sqrt(24 x 365) (crypto trades every hour of
  the year), risk-free rate 0; undefined (None) with fewer than two returns or zero variance;
- win rate: share of closed trades with P&L > 0 (fees included);
- exposure: share of hours with at least one open position, and the mean of invested / equity.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

HOURS_PER_YEAR = 24 * 365


def simple_returns(values: Sequence[float]) -> list[float]:
    return [b / a - 1.0 for a, b in itertools.pairwise(values) if a]


def period_return(values: Sequence[float]) -> float | None:
    if len(values) < 2 or not values[0]:
        return None
    return values[-1] / values[0] - 1.0


def drawdowns(values: Sequence[float]) -> list[float]:
    out, peak = [], float("-inf")
    for value in values:
        peak = max(peak, value)
        out.append(1.0 - value / peak if peak > 0 else 0.0)
    return out


def max_drawdown(values: Sequence[float]) -> float:
    return max(drawdowns(values), default=0.0)


def sharpe(returns: Sequence[float], periods_per_year: int = HOURS_PER_YEAR) -> float | None:
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns) / n
    var = sum((r - mean) ** 2 for r in returns) / (n - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(periods_per_year)


def win_rate(pnls: Sequence[float]) -> float | None:
    return sum(1 for p in pnls if p > 0) / len(pnls) if pnls else None


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def exposure(invested: Sequence[float], equity: Sequence[float]) -> tuple[float, float]:
    """(share of hours with a position, mean invested fraction of equity)."""
    if not equity:
        return 0.0, 0.0
    in_market = sum(1 for v in invested if v > 0) / len(invested)
    fractions = [i / e for i, e in zip(invested, equity, strict=True) if e > 0]
    return in_market, (sum(fractions) / len(fractions) if fractions else 0.0)
