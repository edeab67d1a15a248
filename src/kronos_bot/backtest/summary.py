"""The summary of a backtest (summary.json), as plain data (pure; the files are written by `report`)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kronos_bot.backtest import metrics
from kronos_bot.backtest.rows import CENT, position_fees

if TYPE_CHECKING:
    from kronos_bot.backtest.runner import BacktestRun

INTRA_BAR_RULE = (
    "exits.update_stop_bar: the bar's low is checked against the stop as it stood before the bar (fill at "
    "the stop, or at the open on a gap); only then does the bar's high raise the HWM, and the close is "
    "checked against the raised stop (fill at the close); max hold is checked at the bar's end. The live "
    "ExitMonitor carries the verdict out through the executor and the simulated broker."
)
FILL_RULE = (
    "decisions at a bar close use only bars closed by then (validate_bars at that time); market buys fill "
    "at the next bar's open + slippage, fee taken in the coin; sells fill at the exit price - slippage, fee "
    "in USD (broker.sim.fee_percent / slippage_bps)"
)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def build_summary(run: BacktestRun) -> dict[str, Any]:
    """summary.json (see metrics for the definitions)."""
    s = run.settings
    equity = [float(p.equity) for p in run.equity]
    invested = [float(p.invested) for p in run.equity]
    returns = metrics.simple_returns(equity)
    closed = [p for p in run.positions if not p.is_open]
    still_open = [p for p in run.positions if p.is_open]
    holds = [(p.exit_time - p.entry_time).total_seconds() / 3600 for p in closed if p.exit_time]
    in_market, invested_fraction = metrics.exposure(invested, equity)
    bh = {
        sym: _round(float(end / m - 1)) if m and (end := run.end_marks.get(sym)) else None
        for sym, m in run.start_marks.items()
    }
    bh_curve = [float(v) for v in run.benchmark]
    actions = Counter(d["action"] for d in run.decisions)
    skip_reasons: Counter[str] = Counter()
    for d in run.decisions:
        if d["action"] == "SKIP":
            skip_reasons.update(r for r in d["reasons"].split(";") if r)
    fees = sum((position_fees(p) for p in run.positions), Decimal(0))
    realized = sum((p.pnl or Decimal(0) for p in closed), Decimal(0))
    return {
        "period": {"from": run.period.start.isoformat(), "to": run.period.end.isoformat(), "hours": run.period.hours},
        "symbols": list(s.symbols),
        "starting_cash": str(run.equity[0].equity.quantize(CENT)) if run.equity else None,
        "final_equity": str(run.equity[-1].equity.quantize(CENT)) if run.equity else None,
        "period_return": _round(metrics.period_return(equity)),
        "max_drawdown": _round(metrics.max_drawdown(equity)),
        "sharpe_annualized": _round(metrics.sharpe(returns), 4),
        "sharpe_definition": "mean/std of hourly equity returns x sqrt(24*365), risk-free 0",
        "trades": {
            "total": len(run.positions),
            "closed": len(closed),
            "open_at_end": len(still_open),
            "per_tier": dict(Counter(p.tier or "unknown" for p in run.positions)),
            "win_rate": _round(metrics.win_rate([float(p.pnl) for p in closed if p.pnl is not None]), 4),
            "avg_hold_hours": _round(metrics.mean(holds), 3),
            "exit_reasons": dict(Counter(p.exit_reason for p in closed)),
        },
        "realized_pnl_usd": str(realized.quantize(CENT)),
        "fees_usd": str(fees.quantize(CENT)),
        "exposure": {"time_in_market": _round(in_market, 4), "avg_invested_fraction": _round(invested_fraction, 4)},
        "buy_and_hold": {
            "per_symbol": bh,
            "equal_weight": _round(metrics.period_return(bh_curve)),
            "equal_weight_max_drawdown": _round(metrics.max_drawdown(bh_curve)),
            "note": "price return from the first to the last boundary, before fees",
        },
        "decisions": {
            "total": len(run.decisions),
            "enter": actions.get("ENTER", 0),
            "skip": actions.get("SKIP", 0),
            "skip_reasons": dict(skip_reasons.most_common()),
        },
        "entry_outcomes": run.entry_outcomes,
        "sentiment": run.sentiment,
        "kronos": {
            "sampling": s.gates.kronos.model_dump(),
            "forecasts": run.forecasts,
            "model": _model_label(run.model_info),
        },
        "costs": {"fee_percent": s.broker.sim.fee_percent, "slippage_bps": s.broker.sim.slippage_bps},
        "rules": {"fills": FILL_RULE, "intra_bar": INTRA_BAR_RULE},
        "memo": run.memo,
        "exit_mismatches": run.exit_mismatches,
        "config_fingerprint": s.fingerprint(),
        "seconds": round(run.seconds, 3),
    }


def _model_label(info: dict[str, Any] | None) -> Any:
    if not info:
        return None
    keep = ("backend", "model", "tokenizer", "device", "threads")
    return {k: info[k] for k in keep if k in info} or {k: str(v)[:200] for k, v in info.items()}
