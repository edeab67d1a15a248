#!/usr/bin/env python3
"""Trader benchmarks: RSS, restart-to-ready time, and one 4-symbol cycle with a warm forecaster.

Set-up (all on this machine, nothing leaves loopback): our fake Alpaca server with fresh synthetic bars,
a forecaster subprocess serving a random-weight model of Kronos-small's exact config over TCP 127.0.0.1
(with a bearer token), and the trader (`kronos-bot run`) as a subprocess in service mode with the
ensemble method at --samples paths. The trader is restarted --restarts times; each start gives
  * restart-to-ready: process start -> `trader.ready` (config, journal, reconcile, forecaster check);
  * the first cycle's own time (`cycle.end` total_seconds): its forecast cache is empty, so the cycle
    includes the forecaster round trip for all symbols;
  * RSS (VmRSS) and peak RSS (VmHWM) of the trader after that cycle.

    .venv/bin/python scripts/bench_trader.py --samples 32 --restarts 5 [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakealpaca import FakeAlpaca  # noqa: E402  (the repo's own fake, reused for the benchmark)

SYMBOLS = ("BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD")
TOKEN = "bench-token-0123456789"


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MB from /proc."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


def wait_event(path: Path, name: str, proc: subprocess.Popen[bytes], timeout: float, after: int = 0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(path)[after:]:
            if event.get("event") == name:
                return event
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = "\n".join(path.read_text().splitlines()[-20:])
    raise SystemExit(f"timed out waiting for {name} in {path}\n{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="forecaster torch threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from kronos_bot.kronos.random_init import write_random_checkpoints

    work = Path(tempfile.mkdtemp(prefix="kb-bench-trader-"))
    model_dir, tokenizer_dir = write_random_checkpoints(work / "ckpt", seed=0)
    entry = Path(sys.executable).parent / "kronos-bot"

    fake = FakeAlpaca().start()
    last_open = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for i, symbol in enumerate(SYMBOLS):
        fake.market.add_hourly_bars(symbol, end=last_open, count=90, start_price=100.0 * (i + 1))
        fake.trading.set_price(symbol, fake.market.bars[symbol][-1].c)

    port = 18765
    data = yaml.safe_load((REPO / "config" / "bot.yaml").read_text())
    data["bars"].update(data_url_override=fake.base_url)
    data["broker"].update(trading_url_override=fake.base_url)
    data["schedule"].update(entry_interval_seconds=3, exit_interval_seconds=5)
    data["gates"]["kronos"].update(method="ensemble", samples=args.samples)
    data["forecaster"].update(
        mode="service",
        url=f"http://127.0.0.1:{port}",
        host="127.0.0.1",
        port=port,
        model=str(model_dir),
        tokenizer=str(tokenizer_dir),
        model_revision=None,
        tokenizer_revision=None,
        verify_sha256=False,
        threads=args.threads,
        ready_timeout_seconds=120,
    )
    data["journal"]["path"] = str(work / "journal.sqlite")
    data["logging"]["format"] = "json"
    config = work / "bot.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    env.update(
        KRONOS_BOT_CONFIG=str(config),
        KRONOS_BOT_FORECASTER_TOKEN=TOKEN,
        ALPACA_API_KEY="PKBENCH",
        ALPACA_SECRET_KEY="bench-secret",
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
    )

    flog = work / "forecaster.log"
    t0 = time.monotonic()
    forecaster = subprocess.Popen(
        [str(entry), "forecaster", "--host", "127.0.0.1", "--port", str(port)],
        stdout=flog.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    results: dict[str, Any] = {"samples": args.samples, "restarts": args.restarts}
    try:
        wait_event(flog, "forecaster.ready", forecaster, 300)
        results["forecaster_start_to_ready_s"] = round(time.monotonic() - t0, 2)
        results["forecaster_rss_mb"] = round(proc_status(forecaster.pid)["VmRSS"], 1)
        ready_times, cycle_times, forecast_times, rss, hwm = [], [], [], [], []
        for run in range(args.restarts):
            tlog = work / f"trader-{run}.log"
            start = time.monotonic()
            trader = subprocess.Popen([str(entry), "run"], stdout=tlog.open("w"), stderr=subprocess.STDOUT, env=env)
            try:
                wait_event(tlog, "trader.ready", trader, 120)
                ready_times.append(time.monotonic() - start)
                end = wait_event(tlog, "cycle.end", trader, 120)
                cycle_times.append(float(end["total_seconds"]))
                forecast_times.append(float(end["durations"].get("kronos", 0.0)))
                status = proc_status(trader.pid)
                rss.append(status["VmRSS"])
                hwm.append(status["VmHWM"])
            finally:
                trader.send_signal(signal.SIGTERM)
                trader.wait(60)
        results.update(
            trader_restart_to_ready_s={
                "median": round(statistics.median(ready_times), 3),
                "max": round(max(ready_times), 3),
            },
            cycle_seconds={"median": round(statistics.median(cycle_times), 3), "max": round(max(cycle_times), 3)},
            cycle_kronos_stage_seconds={"median": round(statistics.median(forecast_times), 3)},
            trader_rss_mb={"median": round(statistics.median(rss), 1), "max": round(max(rss), 1)},
            trader_peak_rss_mb=round(max(hwm), 1),
        )
    finally:
        forecaster.send_signal(signal.SIGTERM)
        forecaster.wait(60)
        fake.stop()
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
