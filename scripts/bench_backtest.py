#!/usr/bin/env python3
"""Time a 6-month, 4-symbol backtest with a random-weight model of Kronos-small's size: cold, then cached.

Why random weights: speed depends on shapes, not values, and the benchmark must run offline. The
checkpoints come from `kronos_bot.kronos.random_init.write_random_checkpoints` (Kronos-small +
Tokenizer-base configs) and are loaded by the real loader (`forecaster.factory.load_model`, as
`kronos-bot backtest --model DIR --tokenizer DIR --no-verify` does). Each phase runs in its own process so
that its peak RSS is its own:
  cold    empty forecast cache: every window is validated, gated and forecast
  cached  same cache: no model call, memoized validation and technical gate
The model is loaded lazily, as the command loads it: the checkpoint files are resolved up front (their
identity keys the cache), torch and the model only at the first forecast not in the cache -- inside the
cold replay, never in a fully cached one. Wall times cover loading the bars, the replay and writing the
report; `process_s` / `subprocess_s` are the whole child process, Python start-up included.

    python scripts/bench_backtest.py [--months 6] [--symbols 4] [--samples 1] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

STARTED = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def child(args: argparse.Namespace) -> dict[str, object]:
    from kronos_bot.backtest.cache_store import CacheStore
    from kronos_bot.backtest.data import BarStore, load_csv_dir
    from kronos_bot.backtest.options import backtest_settings
    from kronos_bot.backtest.period import Period
    from kronos_bot.backtest.progress import Progress
    from kronos_bot.backtest.report import write_backtest_report
    from kronos_bot.backtest.runner import run_backtest
    from kronos_bot.config import Settings
    from kronos_bot.forecaster.factory import load_model
    from kronos_bot.logs import configure_logging

    configure_logging(level="WARNING", stream=sys.stderr)
    base = Settings()
    t = time.perf_counter()
    checkpoints = Path(args.cache) / "checkpoints"
    # Lazily, as the backtest command loads it: a fully cached run never imports torch or builds the model.
    model = load_model(
        base,
        model=str(checkpoints / "model"),
        tokenizer=str(checkpoints / "tokenizer"),
        verify=False,
        threads=args.threads,
        lazy=True,
    )
    model_load_s = time.perf_counter() - t

    settings = backtest_settings(base, symbols=base.symbols[: args.symbols], samples=args.samples)
    started = time.perf_counter()
    store = BarStore(load_csv_dir(args.data, settings.symbols))
    _, end = store.span()
    start = max(store.warmed_up_from(settings.bars.count), end - timedelta(days=round(args.months * 30.44)))
    period = Period(start, end)
    bar = Progress(period.hours + 1, f"{args.phase:>6}")
    with CacheStore.in_dir(args.cache) as cache:
        run = run_backtest(
            settings,
            store,
            period,
            forecaster=model,
            cache=cache,
            batch_hours=args.batch_hours,
            progress=lambda done, total, note: bar.update(done, note),
        )
    bar.close()
    replay_s = time.perf_counter() - started
    t = time.perf_counter()
    summary = write_backtest_report(run, Path(args.cache) / f"report-{args.phase}")
    report_s = time.perf_counter() - t
    return {
        "phase": args.phase,
        "hours": period.hours,
        "symbols": settings.symbols,
        "samples": args.samples,
        "threads": args.threads,
        "model_built": getattr(model, "built", True),
        "wall_s": round(time.perf_counter() - started, 2),
        "replay_s": round(replay_s, 2),
        "report_s": round(report_s, 2),
        "model_load_s": round(model_load_s, 2),
        "process_s": round(time.perf_counter() - STARTED, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
        "forecasts": run.forecasts,
        "memo": run.memo,
        "trades": summary["trades"]["total"],
        "final_equity": summary["final_equity"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=float, default=6.0)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the forecaster's default)")
    parser.add_argument("--batch-hours", type=int, default=4)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="default: ../shared/data")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--cache-dir",
        help="keep checkpoints and caches in this directory (default: a temporary one); "
        "with --phases cached, re-time a cache filled by an earlier run",
    )
    parser.add_argument("--phases", default="cold,cached", help="comma-separated, in order (default: cold,cached)")
    parser.add_argument("--phase", choices=["cold", "cached"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(child(args)))
        return 0

    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or any(p not in ("cold", "cached") for p in phases):
        parser.error("--phases takes cold and/or cached")
    results = {}
    with contextlib.ExitStack() as stack:
        cache = args.cache_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-backtest-"))
        if not (Path(cache) / "checkpoints").is_dir():
            from kronos_bot.kronos.random_init import write_random_checkpoints

            write_random_checkpoints(Path(cache) / "checkpoints")
        for phase in phases:
            cmd = [
                sys.executable,
                __file__,
                "--phase",
                phase,
                "--cache",
                cache,
                "--months",
                str(args.months),
                "--symbols",
                str(args.symbols),
                "--samples",
                str(args.samples),
                "--threads",
                str(args.threads),
                "--batch-hours",
                str(args.batch_hours),
                "--data",
                args.data,
            ]
            t = time.perf_counter()
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
            results[phase] = {
                **json.loads(done.stdout.strip().splitlines()[-1]),
                "subprocess_s": round(time.perf_counter() - t, 2),
            }
    if args.json:
        print(json.dumps(results))
        return 0
    first = next(iter(results.values()))
    print(
        f"backtest {first['hours']} h x {len(first['symbols'])} symbols, {args.samples} sample(s), "
        f"{first['threads']} torch threads (measured on a shared machine)"
    )
    for r in results.values():
        f = r["forecasts"]
        print(
            f"  {r['phase']:<6} wall {r['wall_s']:7.1f} s (replay {r['replay_s']:.1f}, report {r['report_s']:.1f}; "
            f"whole process incl. Python start-up {r['subprocess_s']:.1f} s)  peak RSS {r['peak_rss_mb']} MB  "
            f"forecasts {f['computed']} computed / {f['cached']} cached in {f['forecaster_calls']} calls "
            f"({f['compute_seconds']} s in the model)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
