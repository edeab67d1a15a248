"""Numbers as a person reads them (status, notifications, reports): one rule for prices, everywhere.

Rounded for reading only, never for computing: the journal, the JSON outputs and the broker keep full
precision. A price has 2 decimals from $1 up (97,412.35) and 6 significant digits below (0.321457,
0.0000123457: spelled out, never an exponent, never rounded to nothing), and is never shown finer than
the asset's price increment when that is known (BTC/USD at Alpaca moves in whole dollars).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

SIGNIFICANT_BELOW_ONE = 6


def price_text(value: Decimal | float | int | str | None, increment: Decimal | None = None) -> str:
    if value is None:
        return "n/a"
    price = value if isinstance(value, Decimal) else Decimal(str(value))
    if price == 0:
        return "0"
    decimals = 2 if abs(price) >= 1 else max(0, SIGNIFICANT_BELOW_ONE - 1 - price.adjusted())
    if increment is not None and increment > 0:
        exponent = increment.normalize().as_tuple().exponent
        decimals = min(decimals, max(0, -exponent if isinstance(exponent, int) else 0))
    rounded = price.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if increment is not None and increment > 0:
        rounded = (rounded / increment).quantize(Decimal(1), rounding=ROUND_HALF_UP) * increment
        rounded = rounded.quantize(Decimal(1).scaleb(-decimals))
    return f"{rounded:,.{decimals}f}"
