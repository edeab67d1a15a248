#!/usr/bin/env python3
"""Time our Kronos forecast on a random-weight model with Kronos-small's and Tokenizer-base's configs.

Why random weights: speed depends on shapes, not values, and the benchmark must run offline with no
download. The baseline is our own code with every cache disabled and the samples run one at a time
(the shape of the reference loop), so the ratio shows what caching and batching buy.

    python scripts/bench_forecast.py --samples 32 --runs 5 --threads 2 [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
import torch

from kronos_bot.forecast_types import SamplingParams, SeriesInput
from kronos_bot.kronos.predictor import KronosPredictor
from kronos_bot.kronos.random_init import random_models


def build_predictor(seed: int = 0) -> KronosPredictor:
    """Kronos-small + Tokenizer-base configs (as published), random weights."""
    model, tokenizer = random_models(seed)
    return KronosPredictor(model, tokenizer, info={"model": "random Kronos-small config"})


def random_series(symbols: int, context: int, seed: int = 0) -> list[SeriesInput]:
    """Random-walk hourly candles, one series per symbol."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for s in range(symbols):
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, context)))
        open_ = np.concatenate(([close[0]], close[:-1]))
        spread = np.abs(rng.normal(0, 0.005, context)) * close
        out.append(
            SeriesInput(
                id=f"SYM{s}",
                timestamps=[start + timedelta(hours=i) for i in range(context)],
                open=open_.tolist(),
                high=(np.maximum(open_, close) + spread).tolist(),
                low=(np.minimum(open_, close) - spread).tolist(),
                close=close.tolist(),
                volume=rng.uniform(10, 100, context).tolist(),
            )
        )
    return out


def time_runs(fn: object, runs: int) -> list[float]:
    fn()  # type: ignore[operator]  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--context", type=int, default=60)
    parser.add_argument("--pred-len", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-runs", type=int, default=None, help="runs for the slow baseline (default: --runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the slow no-cache baseline")
    parser.add_argument("--json", action="store_true", help='print {"median_s", "baseline_median_s", "peak_rss_mb"}')
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    predictor = build_predictor()
    series = random_series(args.symbols, args.context)
    params = SamplingParams(
        pred_len=args.pred_len, samples=args.samples, top_p=0.9, seed=1, max_context=max(512, args.context)
    )

    times = time_runs(lambda: predictor.forecast(series, params), args.runs)
    baseline: list[float] = []
    if not args.no_baseline:
        one = replace(params, samples=1)

        def run_baseline() -> None:
            for k in range(args.samples):
                predictor.forecast(series, replace(one, seed=k), use_cache=False)

        baseline = time_runs(run_baseline, args.baseline_runs or args.runs)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    result = {
        "median_s": statistics.median(times),
        "baseline_median_s": statistics.median(baseline) if baseline else None,
        "peak_rss_mb": peak_rss_mb,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.symbols} symbols x {args.context} context x {args.pred_len} predicted x {args.samples} samples, "
            f"{torch.get_num_threads()} threads, {args.runs} runs"
        )
        print(f"  forecast  median {result['median_s']:.4f} s  (min {min(times):.4f}, max {max(times):.4f})")
        if baseline:
            print(f"  baseline  median {result['baseline_median_s']:.4f} s  (no cache, one sample at a time)")
            print(f"  speed-up  {result['baseline_median_s'] / result['median_s']:.1f}x")
        print(f"  peak RSS  {peak_rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
