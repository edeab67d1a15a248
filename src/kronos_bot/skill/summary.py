"""Many scored forecasts -> the skill table `kronos-bot skill` prints, `status` shows and the guard reads.

Per group (overall, each symbol) and window (7 days, 30 days, all):
  n; hit rate with a 95 % Wilson interval; mean Brier and the no-change baseline's, and the Brier skill
  score BSS = 1 - Brier / Brier_no_change (> 0: better than a coin flip) with a 95 % interval from the
  paired per-forecast differences (normal approximation); the same for CRPS (CRPSS, against the
  random walk); the share of outcomes inside p10-p90 (about 0.8 when calibrated); a 10-bin PIT histogram.
The guard calls Kronos skill-less when the whole BSS interval lies below zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kronos_bot.skill.scores import Scores

Z95 = 1.959964
PIT_BINS = 10
WINDOWS = (("7d", timedelta(days=7)), ("30d", timedelta(days=30)), ("all", None))


@dataclass(frozen=True)
class ScoredForecast:
    symbol: str
    origin: datetime  # the close time of the forecast's last context bar
    scores: Scores


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (well behaved at small n and near 0 or 1)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _skill(model: Sequence[float], baseline: Sequence[float]) -> tuple[float | None, list[float] | None]:
    """(1 - mean(model) / mean(baseline), its 95 % interval from the paired differences)."""
    n = len(model)
    base = _mean(baseline)
    if n == 0 or not base:
        return None, None
    diffs = [m - b for m, b in zip(model, baseline, strict=True)]
    mean_d = sum(diffs) / n
    skill = -mean_d / base
    if n < 2:
        return skill, None
    sd = math.sqrt(sum((d - mean_d) ** 2 for d in diffs) / (n - 1))
    half = Z95 * sd / math.sqrt(n) / base
    return skill, [skill - half, skill + half]


def pit_histogram(pits: Iterable[float], bins: int = PIT_BINS) -> list[int]:
    counts = [0] * bins
    for p in pits:
        counts[min(int(p * bins), bins - 1)] += 1
    return counts


def summarize(rows: Sequence[ScoredForecast]) -> dict[str, Any]:
    """The skill numbers of a set of scored forecasts (keys as `skill --json` prints them)."""
    n = len(rows)
    s = [r.scores for r in rows]
    hits = sum(1 for x in s if x.hit)
    ci = wilson(hits, n)
    brier_skill, brier_ci = _skill([x.brier for x in s], [x.baseline_brier for x in s])
    crps_skill, crps_ci = _skill([x.crps for x in s], [x.baseline_crps for x in s])
    return {
        "n": n,
        "hit_rate": hits / n if n else None,
        "hit_rate_ci": list(ci) if ci else None,
        "brier": _mean([x.brier for x in s]),
        "brier_baseline": _mean([x.baseline_brier for x in s]),
        "brier_skill": brier_skill,
        "brier_skill_ci": brier_ci,
        "crps": _mean([x.crps for x in s]),
        "crps_baseline": _mean([x.baseline_crps for x in s]),
        "crps_skill": crps_skill,
        "crps_skill_ci": crps_ci,
        "coverage_p10_p90": sum(1 for x in s if x.covered) / n if n else None,
        "abs_error_pct": _mean([x.abs_error_pct for x in s]),
        "drift_hit_rate": sum(1 for x in s if x.drift_hit) / n if n else None,
        "drift_brier": _mean([x.drift_brier for x in s]),
        "drift_crps": _mean([x.drift_crps for x in s]),
        "pit_histogram": pit_histogram(x.pit for x in s),
    }


def _windowed(rows: Sequence[ScoredForecast], now: datetime | None) -> dict[str, Any]:
    out = summarize(rows)
    latest = now or max((r.origin for r in rows), default=None)
    windows = {}
    for name, span in WINDOWS:
        subset = rows if span is None or latest is None else [r for r in rows if r.origin > latest - span]
        windows[name] = summarize(subset)
    out["windows"] = windows
    return out


def skill_report(rows: Sequence[ScoredForecast], now: datetime | None = None) -> dict[str, Any]:
    """`{"overall": {...}, "by_symbol": {SYMBOL: {...}}}`, each with its 7d / 30d / all windows."""
    symbols = sorted({r.symbol for r in rows})
    return {
        "overall": _windowed(rows, now),
        "by_symbol": {sym: _windowed([r for r in rows if r.symbol == sym], now) for sym in symbols},
    }


def no_skill(summary: dict[str, Any], min_n: int) -> bool:
    """Kronos is worse than a coin flip with 95 % confidence: the whole BSS interval is below zero."""
    ci = summary.get("brier_skill_ci")
    return summary.get("n", 0) >= min_n and ci is not None and ci[1] < 0


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def overall_line(summary: dict[str, Any]) -> str:
    """One readable line (status, daily summary)."""
    if not summary.get("n"):
        return "no scored forecasts yet"
    ci = summary.get("hit_rate_ci") or [None, None]
    return (
        f"n {summary['n']}  hit {_fmt(summary['hit_rate'], '{:.1%}')} "
        f"[{_fmt(ci[0], '{:.1%}')}, {_fmt(ci[1], '{:.1%}')}]  "
        f"Brier {_fmt(summary['brier'])} vs {_fmt(summary['brier_baseline'])} "
        f"(BSS {_fmt(summary['brier_skill'], '{:+.3f}')})  "
        f"CRPS {_fmt(summary['crps'], '{:.3f}%')} vs {_fmt(summary['crps_baseline'], '{:.3f}%')} "
        f"(CRPSS {_fmt(summary['crps_skill'], '{:+.3f}')})  p10-p90 {_fmt(summary['coverage_p10_p90'], '{:.0%}')}"
    )


def pit_text(counts: Sequence[int], width: int = 30) -> list[str]:
    """The PIT histogram as text bars (flat when calibrated; U-shaped when bands are too narrow)."""
    top = max(counts) if counts and max(counts) > 0 else 1
    bins = len(counts)
    return [
        f"  {i / bins:.1f}-{(i + 1) / bins:.1f} {'#' * round(width * c / top):<{width}} {c}"
        for i, c in enumerate(counts)
    ]
