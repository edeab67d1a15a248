#!/usr/bin/env python3
"""Benchmark the forecaster *service*: start-to-ready, RSS after load, latency and requests/s over HTTP.

The service runs in a child process (this script with `--serve`), exactly as `kronos-bot forecaster`
runs it (same app, uvicorn, socket code), but with a random-weight model of Kronos-small's and
Tokenizer-base's exact configs from `kronos_bot.kronos.random_init` (no download). A child
process, not a thread, so that start-to-ready includes interpreter start and the torch import, and so
the RSS measured is the forecaster's alone.

The client sends a 4-symbol, 60-bar request (random-walk hourly candles) at 1 and 32 samples, one
request at a time by default, and reports p50/p95 latency, requests/s, and the server-side compute
time (so the HTTP + JSON overhead is visible as the difference).

    python scripts/bench_forecaster.py [--runs 20] [--samples 1 32] [--threads 2] [--tcp] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from kronos_bot.forecast_types import SamplingParams, SeriesInput  # noqa: E402


def serve(socket_path: str | None, port: int | None, threads: int) -> int:
    """Child mode: the forecaster service with a random Kronos-small; READY when the model is built."""
    from kronos_bot.forecaster.server import run
    from kronos_bot.forecaster.service import ServiceLimits
    from kronos_bot.logs import configure_logging

    configure_logging("WARNING", "json", sys.stderr)

    def loader() -> Any:
        import torch

        from kronos_bot.kronos.predictor import KronosPredictor
        from kronos_bot.kronos.random_init import random_models

        torch.set_num_threads(threads)
        return KronosPredictor(*random_models(seed=0), info={"model": "random Kronos-small config"})

    return run(
        loader,
        socket_path=socket_path,
        host="127.0.0.1" if port is not None else None,
        port=port,
        limits=ServiceLimits(max_request_cells=10**7),
    )


def random_series(symbols: int, context: int, seed: int = 0) -> list[SeriesInput]:
    """Random-walk hourly candles (stdlib only, so the client side stays torch-free)."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for s in range(symbols):
        closes, price = [], 100.0 * (s + 1)
        for _ in range(context):
            price *= math.exp(rng.gauss(0, 0.01))
            closes.append(price)
        opens = [closes[0], *closes[:-1]]
        spread = [abs(rng.gauss(0, 0.005)) * c for c in closes]
        out.append(
            SeriesInput(
                id=f"SYM{s}/USD",
                timestamps=[start + timedelta(hours=i) for i in range(context)],
                open=opens,
                high=[max(o, c) + d for o, c, d in zip(opens, closes, spread, strict=True)],
                low=[min(o, c) - d for o, c, d in zip(opens, closes, spread, strict=True)],
                close=closes,
                volume=[rng.uniform(10, 100) for _ in range(context)],
            )
        )
    return out


def rss_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, MB."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mb": values.get("VmRSS", math.nan), "peak_rss_mb": values.get("VmHWM", math.nan)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def measure(
    client: Any, series: list[SeriesInput], samples: int, pred_len: int, runs: int, concurrency: int
) -> dict[str, Any]:
    params = SamplingParams(pred_len=pred_len, samples=samples, seed=1)
    for _ in range(2):  # warm-up: first-call allocations, thread pools
        client.forecast(series, params)
    latencies: list[float] = []
    computes: list[float] = []

    def one(_i: int) -> None:
        start = time.perf_counter()
        result = client.forecast(series, params)
        latencies.append(time.perf_counter() - start)
        computes.append(result[0].compute_seconds)

    wall = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(runs)))
    wall = time.perf_counter() - wall
    return {
        "samples": samples,
        "runs": runs,
        "concurrency": concurrency,
        "requests_per_s": round(runs / wall, 2),
        "p50_s": round(statistics.median(latencies), 4),
        "p95_s": round(percentile(latencies, 0.95), 4),
        "max_s": round(max(latencies), 4),
        "server_compute_p50_s": round(statistics.median(computes), 4),
        "server_compute_p95_s": round(percentile(computes, 0.95), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed requests per sample count")
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--context", type=int, default=60)
    parser.add_argument("--pred-len", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the service")
    parser.add_argument("--concurrency", type=int, default=1, help="client threads sending at once")
    parser.add_argument("--tcp", action="store_true", help="127.0.0.1 instead of a Unix socket")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", metavar="SOCKET", help=argparse.SUPPRESS)
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve or args.serve_port is not None:
        return serve(args.serve, args.serve_port, args.threads)

    from kronos_bot.forecaster.client import ForecasterClient
    from kronos_bot.logs import configure_logging

    configure_logging("WARNING", "json", sys.stderr)
    workdir = tempfile.mkdtemp(prefix="kfb", dir="/tmp")
    socket_path = os.path.join(workdir, "f.sock")
    if args.tcp:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        child_args = ["--serve-port", str(port)]
        client = ForecasterClient(url=f"http://127.0.0.1:{port}", timeout=120, max_attempts=1)
    else:
        child_args = ["--serve", socket_path]
        client = ForecasterClient(socket_path=socket_path, timeout=120, max_attempts=1)

    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, *child_args, "--threads", str(args.threads)])
    try:
        client.wait_ready(args.ready_timeout)
        start_to_ready = time.perf_counter() - started
        memory_after_load = rss_mb(child.pid)
        info = client.model_info()
        health = client.health()
        series = random_series(args.symbols, args.context)
        results = [measure(client, series, n, args.pred_len, args.runs, args.concurrency) for n in args.samples]
        memory_end = rss_mb(child.pid)
    finally:
        client.close()
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    report = {
        "transport": "tcp" if args.tcp else "unix",
        "model": info.get("model"),
        "threads": info.get("threads"),
        "symbols": args.symbols,
        "context": args.context,
        "pred_len": args.pred_len,
        "start_to_ready_s": round(start_to_ready, 3),
        "service_load_s": health.get("load_seconds"),
        "rss_after_load_mb": memory_after_load["rss_mb"],
        "rss_end_mb": memory_end["rss_mb"],
        "peak_rss_mb": memory_end["peak_rss_mb"],
        "results": results,
        "child_exit_code": child.returncode,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"forecaster ({report['transport']}, {report['model']}, {report['threads']} threads, "
        f"{args.symbols} symbols x {args.context} bars -> {args.pred_len})"
    )
    print(
        f"  start-to-ready {report['start_to_ready_s']:.2f} s (model load {report['service_load_s']} s), "
        f"RSS after load {report['rss_after_load_mb']} MB, at end {report['rss_end_mb']} MB, "
        f"peak {report['peak_rss_mb']} MB"
    )
    for r in results:
        print(
            f"  samples={r['samples']:>3}: p50 {r['p50_s'] * 1000:7.1f} ms  p95 {r['p95_s'] * 1000:7.1f} ms  "
            f"{r['requests_per_s']:6.2f} req/s  (server compute p50 {r['server_compute_p50_s'] * 1000:.1f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
