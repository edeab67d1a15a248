"""What `kronos-bot backtest` and `kronos-bot evaluate` share: data, period, model and cache arguments.

Torch-free at import (the commands' `--help` must stay fast); the model is loaded on its first forecast.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import BarStore, fetch_alpaca_history, load_csv_dir
from kronos_bot.backtest.period import Period, parse_time
from kronos_bot.backtest.progress import Progress
from kronos_bot.config import Settings
from kronos_bot.domain import symbol_argument
from kronos_bot.forecast_types import Forecaster
from kronos_bot.market.bars import FETCH_MARGIN_BARS

DEFAULT_CACHE_DIR = "var/backtest-cache"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR|alpaca",
        help="directory of {BASE}_USD_1h.csv files (timestamp,open,high,low,close,volume; timestamp = "
        "bar open, UTC), or `alpaca` to fetch history (cached as CSV under --cache-dir)",
    )
    parser.add_argument(
        "--from",
        dest="start",
        metavar="DATE",
        help="first decision time, ISO date/time UTC (default: as soon as every symbol has bars.count bars of history)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        metavar="DATE",
        help="end of the period; a bare date means the end of that day (default: end of the data)",
    )
    parser.add_argument(
        "--symbols",
        nargs="+",
        type=symbol_argument,
        metavar="SYMBOL",
        help="symbols (default: the config's), any case, e.g. BTC/USD eth solusd",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="MODEL", help="predictor: Hub repo id or local directory (default: forecaster.model)"
    )
    parser.add_argument(
        "--tokenizer",
        metavar="TOKENIZER",
        help="tokenizer: Hub repo id or local directory (default: paired/configured)",
    )
    parser.add_argument("--no-verify", action="store_true", help="do not check the checkpoints' sha256")
    parser.add_argument("--threads", type=int, metavar="COUNT", help="torch CPU threads (default: forecaster.threads)")
    parser.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        metavar="DIR",
        help=f"forecast cache, shared by backtest and evaluate (default: {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument(
        "--samples", type=int, metavar="COUNT", help="sampled paths per forecast (default: gates.kronos.samples)"
    )
    parser.add_argument("--seed", type=int, metavar="SEED", help="sampling seed (default: gates.kronos.seed, else 0)")
    parser.add_argument(
        "--batch-hours",
        type=int,
        metavar="HOURS",
        default=4,
        help="hours of forecasts per model call (all symbols of each hour; default 4)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def add_cost_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulated broker's costs and cash (backtest, optimize)."""
    parser.add_argument(
        "--fee-percent", type=float, metavar="PERCENT", help="fee per fill, percent (default: broker.sim.fee_percent)"
    )
    parser.add_argument(
        "--slippage-bps", type=float, metavar="BPS", help="slippage, basis points (default: broker.sim.slippage_bps)"
    )
    parser.add_argument("--starting-cash", type=float, metavar="USD", help="USD (default: broker.sim.starting_cash)")


def symbols_of(args: argparse.Namespace, settings: Settings) -> list[str]:
    """--symbols (already `BASE/USD`: parsed by argparse) or the config's."""
    return list(args.symbols) if args.symbols else list(settings.symbols)


def load_store(args: argparse.Namespace, settings: Settings, symbols: list[str]) -> BarStore:
    """The bars of `symbols` from --data (a directory, or Alpaca through the CSV cache)."""
    if args.data != "alpaca":
        return BarStore(load_csv_dir(Path(args.data), symbols))
    if not args.start:
        raise ValueError("--data alpaca needs --from (and --to, else up to now)")
    start = parse_time(args.start)
    warmup = timedelta(hours=settings.bars.count + settings.bars.max_missing_bars + FETCH_MARGIN_BARS)
    from datetime import UTC, datetime

    end = parse_time(args.end, end_of_day=True) if args.end else datetime.now(UTC)
    frames = fetch_alpaca_history(symbols, start - warmup, end, settings, args.cache_dir)
    return BarStore(frames)


def resolve_period(args: argparse.Namespace, store: BarStore, settings: Settings) -> Period:
    _, last = store.span()
    start = parse_time(args.start) if args.start else store.warmed_up_from(settings.bars.count)
    end = parse_time(args.end, end_of_day=True) if args.end else last
    return Period(start, min(end, last))


def load_forecaster(args: argparse.Namespace, settings: Settings) -> Forecaster:
    """The Kronos model in this process, as `forecaster.factory.load_model` loads it.

    Lazily: the checkpoints are resolved and verified now (their identity keys the forecast cache), but
    torch and the model are loaded only when a forecast is not in the cache, so a re-run with other
    thresholds takes seconds.
    """
    from kronos_bot.forecaster.factory import load_model

    return load_model(
        settings,
        model=args.model,
        tokenizer=args.tokenizer,
        verify=False if args.no_verify else None,
        threads=args.threads,
        lazy=True,
    )


def progress_callback(
    args: argparse.Namespace, label: str
) -> tuple[Callable[[int, int, str], None], Callable[[], None]]:
    """(update(done, total, note), close()) drawing a progress bar on a TTY stderr unless --no-progress."""
    bar: Progress | None = None

    def update(done: int, total: int, note: str) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(total, label, enabled=False if args.no_progress else None)
        bar.update(done, note)

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


@contextlib.contextmanager
def model_run(
    args: argparse.Namespace, settings: Settings, label: str
) -> Iterator[tuple[Forecaster, CacheStore, Callable[[int, int, str], None]]]:
    """What a backtest or evaluation runs with: the (lazy) model, the forecast cache and the progress
    callback; the cache and the progress bar are closed afterwards, whatever happened."""
    from kronos_bot.gates.forecast_cache import warn_if_coarse

    warn_if_coarse(settings.gates.kronos.samples)
    forecaster = load_forecaster(args, settings)
    update, close = progress_callback(args, label)
    cache = CacheStore.in_dir(args.cache_dir)
    try:
        yield forecaster, cache, update
    finally:
        close()
        cache.close()


def run_settings_of(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings a replay runs with: the config with the command line's symbols, sampling and costs."""
    from kronos_bot.backtest.options import backtest_settings

    return backtest_settings(
        settings,
        symbols=symbols_of(args, settings),
        samples=args.samples,
        seed=args.seed,
        fee_percent=args.fee_percent,
        slippage_bps=args.slippage_bps,
        starting_cash=args.starting_cash,
    )
