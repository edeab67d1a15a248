#!/usr/bin/env python3
"""Time the optimizer's trials: 6 months x 4 symbols of real hourly bars, forecasts from the tiny Kronos.

Why the tiny checkpoint: a trial never runs the model (every forecast comes from the cache), so its speed
does not depend on the model's size; the tiny model only keeps the one-off cold prepare short. Phases:
  prepare   `prepare_trials` over the whole period; cold the first time (forecasts computed and cached
            in --cache-dir), warm afterwards (no model needed: the cache names the model it came from)
  trials    N trials of `run_trial` over the whole period with random parameter draws (the kind of
            values `kronos-bot optimize` samples); trials/s, median and p90 seconds per trial; then
            the shipped settings themselves as a trial (they trade the most)
  backtest  the same draws through `run_backtest` from the same cache, for comparison (fewer of them:
            --backtests, default 3), each checked to give the trial's result

    python scripts/bench_optimize.py [--trials 20] [--backtests 3] [--samples 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
TINY = REPO / "tests" / "fixtures" / "kronos_tiny"
START, END = datetime(2024, 7, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)


def draw(rng: random.Random) -> dict[str, Any]:
    """One parameter set, as nested config sections (ranges like the shipped search space's)."""
    rsi_min = rng.uniform(20, 50)
    return {
        "gates": {
            "kronos": {"min_confidence": rng.uniform(0.05, 0.8), "threshold_percent": rng.uniform(0.02, 1.0)},
            "technical": {"rsi_min": rsi_min, "rsi_max": rng.uniform(rsi_min + 10, 95)},
        },
        "exits": {
            "trail_percent": rng.uniform(0.5, 5.0),
            "trail_activation_percent": rng.uniform(0.0, 3.0),
            "stop_loss_percent": rng.uniform(1.0, 10.0),
        },
        "engine": {"tiers": {"kronos_only": rng.uniform(0.2, 1.0)}},
        "risk": {"cooldown_minutes": rng.choice([0, 30, 60, 120, 240, 720])},
    }


def with_changes(settings: Any, changes: dict[str, Any]) -> Any:
    """`settings` with nested section changes, each changed section validated by its own model."""

    def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in update.items():
            out[key] = merge(base[key], value) if isinstance(value, dict) else value
        return out

    sections = {}
    for name, update in changes.items():
        current = getattr(settings, name)
        sections[name] = type(current).model_validate(merge(current.model_dump(), update))
    return settings.model_copy(update=sections)


def same_result(trial: Any, run: Any) -> bool:
    """A trial and a backtest of the same settings agree on the trades and the equity curve."""
    closed = [p for p in run.positions if not p.is_open]
    curve = [(p.time, round(float(p.equity), 6)) for p in run.equity]
    return trial.trades == len(closed) and [(t, round(v, 6)) for t, v in trial.equity] == curve


def study(args: argparse.Namespace, period: Any) -> dict[str, Any]:
    """The whole command, as a user runs it: prepare, the trials in --jobs workers, walk-forward, report."""
    import re
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as out:
        command = [
            str(Path(sys.executable).with_name("kronos-bot")),
            "optimize",
            "--data",
            args.data,
            "--from",
            period.start.isoformat(),
            "--to",
            period.end.isoformat(),
            "--samples",
            str(args.samples),
            "--seed",
            "0",
            "--cache-dir",
            args.cache_dir,
            "--model",
            str(TINY / "model"),
            "--tokenizer",
            str(TINY / "tokenizer"),
            "--no-verify",
            "--trials",
            str(args.study),
            "--jobs",
            str(args.jobs),
            "--out",
            out,
            "--no-progress",
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
    found = re.search(r"(\d+) trials in ([\d.]+) s \(([\d.]+) trials/s\)", done.stdout)
    # The fold table's rows and what the command said about them (worse than defaults / buy & hold).
    folds = [
        line
        for line in done.stdout.splitlines()
        if re.match(r"\s+\d+\s+(in|out)", line) or line.startswith(("fold ", "out-of-sample"))
    ]
    return {
        "trials": args.study,
        "jobs": args.jobs,
        "wall_s": round(wall, 1),
        "trials_s": float(found.group(2)) if found else None,
        "trials_per_s": float(found.group(3)) if found else None,
        "fold_table": folds,
    }


def timings(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "runs": len(seconds),
        "per_s": round(len(seconds) / sum(seconds), 3),
        "median_s": round(statistics.median(seconds), 3),
        "p90_s": round(p90, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--backtests", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1, help="seed of the parameter draws")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="default: ../shared/data")
    parser.add_argument("--cache-dir", default=str(REPO / "var" / "bench-optimize-cache"))
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the trials to FILE")
    parser.add_argument(
        "--study",
        type=int,
        default=0,
        metavar="TRIALS",
        help="also run `kronos-bot optimize --trials TRIALS --jobs JOBS` on the same period and cache (wall time)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of --study (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from kronos_bot.backtest.cache_store import CacheStore
    from kronos_bot.backtest.data import BarStore, load_csv_dir
    from kronos_bot.backtest.options import backtest_settings
    from kronos_bot.backtest.period import Period
    from kronos_bot.backtest.runner import run_backtest
    from kronos_bot.backtest.trials import prepare_trials, run_trial
    from kronos_bot.config import Settings
    from kronos_bot.logs import configure_logging

    configure_logging(level="WARNING", stream=sys.stderr)
    settings = backtest_settings(Settings(), samples=args.samples, seed=0)
    store = BarStore(load_csv_dir(args.data, settings.symbols))
    period = Period(max(START, store.warmed_up_from(settings.bars.count)), min(END, store.span()[1]))
    out: dict[str, Any] = {"period": str(period), "hours": period.hours, "symbols": settings.symbols}

    def model() -> Any:
        from kronos_bot.forecaster.factory import load_model

        return load_model(
            settings, model=str(TINY / "model"), tokenizer=str(TINY / "tokenizer"), verify=False, lazy=True
        )

    def progress(done: int, total: int, note: str) -> None:
        if done % 400 < 4 or done == total:
            print(f"prepare: {done}/{total} hours, {note}", file=sys.stderr)

    started = time.perf_counter()
    with CacheStore.in_dir(args.cache_dir) as cache:
        try:
            data = prepare_trials(settings, store, period, forecaster=None, cache=cache)
            kind = "warm (no model)"
        except ValueError:  # the cache has not got (all) the forecasts yet
            data = prepare_trials(settings, store, period, forecaster=model(), cache=cache, progress=progress)
            kind = "cold" if data.forecasts.get("computed") else "warm"
    out["prepare"] = {"kind": kind, "seconds": round(time.perf_counter() - started, 2), "forecasts": data.forecasts}
    print(f"prepare: {kind}, {out['prepare']['seconds']} s", file=sys.stderr)

    rng = random.Random(args.seed)
    draws = [with_changes(settings, draw(rng)) for _ in range(max(args.trials, args.backtests))]
    trial_s, trades, results = [], [], []
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for s in draws[: args.trials]:
        t = time.perf_counter()
        result = run_trial(data, s, period.start, period.end)
        trial_s.append(time.perf_counter() - t)
        trades.append(result.trades)
        results.append(result)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if trial_s:
        out["trials"] = {**timings(trial_s), "seconds": [round(x, 3) for x in trial_s], "trades": trades}
        print(f"trials: {out['trials']}", file=sys.stderr)
        # The shipped thresholds trade far more than most draws: the slow end of a study's trials.
        default_s = []
        for _ in range(3):
            t = time.perf_counter()
            result = run_trial(data, settings, period.start, period.end)
            default_s.append(time.perf_counter() - t)
        out["defaults_trial"] = {**timings(default_s), "trades": result.trades}
        print(f"defaults trial: {out['defaults_trial']}", file=sys.stderr)

    backtest_s, differ = [], []
    with CacheStore.in_dir(args.cache_dir) as cache:
        for n, s in enumerate(draws[: args.backtests]):
            t = time.perf_counter()
            run = run_backtest(s, store, period, forecaster=model(), cache=cache)
            backtest_s.append(time.perf_counter() - t)
            if n < len(results) and not same_result(results[n], run):
                differ.append(n)
    if backtest_s:
        # Each backtest replays the same draw as the trial of that number: their results must agree.
        out["backtests"] = {**timings(backtest_s), "compared": min(len(backtest_s), len(results)), "differ": differ}
        print(f"backtests: {out['backtests']}", file=sys.stderr)
    if args.study:
        out["study"] = study(args, period)
        print(f"study: {out['study']}", file=sys.stderr)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
