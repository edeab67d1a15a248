"""`kronos-bot forecast --csv FILE`: forecast the next bars of one CSV series with Kronos, in process.

The CSV has a header `timestamp,open,high,low,close,volume[,amount]` (ISO-8601 timestamps; without an
offset they are taken as UTC), oldest bar first. The last `--context` rows are the context; the
predicted bars continue the CSV's bar interval. Without `--json` a readable table is printed; with it,
one JSON object: candles (mean over sampled paths), p_up, close_quantiles and the settings used.

    kronos-bot forecast --csv bars.csv --samples 32 --top-p 0.9 --seed 7
    kronos-bot forecast --csv tests/fixtures/kronos_tiny/bars.csv --model tests/fixtures/kronos_tiny/model \\
        --tokenizer tests/fixtures/kronos_tiny/tokenizer --no-verify --json

Exit codes (kronos_bot.commands.failures): 0 ok, 2 bad CSV or parameters, 3 the model cannot be loaded,
4 no usable live bars.
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kronos_bot.commands.failures import InputError
from kronos_bot.config import Settings
from kronos_bot.domain import symbol_argument

NAME = "forecast"
HELP = "forecast the next bars of a symbol's live hourly bars (SYMBOL) or of a CSV series (--csv) with Kronos"
LOGS_TO_STDERR = True  # stdout carries the forecast (JSON or table)
EXAMPLE = "example: kronos-bot forecast btc --samples 32   (or: kronos-bot forecast --csv bars.csv --json)"

REQUIRED_COLUMNS = ("open", "high", "low", "close", "volume")


class CsvError(InputError):
    """The CSV cannot be read as bars; the message names the file, line and problem."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "symbol",
        nargs="?",
        type=symbol_argument,
        metavar="SYMBOL",
        help="live: the last closed hourly Alpaca bars of this symbol, any case, e.g. BTC/USD or btc",
    )
    source.add_argument(
        "--csv", metavar="FILE", help="bars: timestamp,open,high,low,close,volume[,amount]; ISO times, UTC if no offset"
    )
    parser.add_argument(
        "--context", metavar="BARS", type=int, default=60, help="context bars: the last BARS rows (default 60)"
    )
    parser.add_argument("--pred-len", metavar="BARS", type=int, default=4, help="bars to predict (default 4)")
    parser.add_argument("--samples", metavar="COUNT", type=int, default=1, help="sampled paths, averaged (default 1)")
    parser.add_argument(
        "--temperature", metavar="TEMP", type=float, default=1.0, help="sampling temperature (default 1.0)"
    )
    parser.add_argument("--top-p", metavar="MASS", type=float, default=0.9, help="nucleus sampling mass (default 0.9)")
    parser.add_argument(
        "--top-k", metavar="COUNT", type=int, default=0, help="keep the COUNT likeliest tokens (0 off, 1 greedy)"
    )
    parser.add_argument(
        "--max-context",
        metavar="BARS",
        type=int,
        default=None,
        help="longest token window (default: forecaster.max_context)",
    )
    parser.add_argument("--seed", metavar="SEED", type=int, default=None, help="random seed (default: fresh, reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    model = parser.add_argument_group("model (default: from the config)")
    model.add_argument("--model", metavar="MODEL", help="predictor: Hub repo id or local directory")
    model.add_argument("--tokenizer", metavar="TOKENIZER", help="tokenizer: Hub repo id or local directory")
    model.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the checkpoint files")
    model.add_argument("--device", metavar="DEVICE", help="torch device (default: forecaster.device)")
    model.add_argument("--threads", metavar="COUNT", type=int, help="torch CPU threads (default: forecaster.threads)")


def read_bars_csv(path: Path) -> dict[str, list[Any]]:
    """Columns of a bar CSV: 'timestamp' (tz-aware UTC datetimes) and float columns."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise CsvError(f"{path}: cannot open: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        fields = [f.strip() for f in reader.fieldnames or []]
        time_column = next((c for c in ("timestamp", "timestamps") if c in fields), None)
        missing = [c for c in REQUIRED_COLUMNS if c not in fields]
        if time_column is None or missing:
            need = ", ".join((["timestamp"] if time_column is None else []) + missing)
            raise CsvError(f"{path}: missing column(s) {need}; the header needs timestamp,open,high,low,close,volume")
        wanted = [*REQUIRED_COLUMNS, *(["amount"] if "amount" in fields else [])]
        out: dict[str, list[Any]] = {"timestamp": [], **{c: [] for c in wanted}}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): v for k, v in row.items() if k is not None}
            out["timestamp"].append(_parse_time(row.get(time_column), path, line))
            for column in wanted:
                value = (row.get(column) or "").strip()
                try:
                    out[column].append(float(value))
                except ValueError:
                    raise CsvError(f"{path}:{line}: {column} {value!r} is not a number") from None
    if not out["timestamp"]:
        raise CsvError(f"{path}: no data rows")
    return out


def live_bars(symbol: str, context: int, settings: Settings) -> dict[str, list[Any]]:
    """The last `context` closed, validated hourly bars of `symbol` from Alpaca (same path as the trader).

    No usable bars is a market data failure (exit 4), worded with the validation's reason.
    """
    import pandas as pd

    from kronos_bot.market.alpaca_http import MarketDataError
    from kronos_bot.market.bars import AlpacaMarketData

    wanted = settings.model_copy(update={"bars": settings.bars.model_copy(update={"count": context})})
    result = AlpacaMarketData(wanted).closed_bars([symbol]).get(symbol)
    if not isinstance(result, pd.DataFrame):
        reason = (
            f"{result.reason}: {result.detail}"
            if result is not None and result.detail
            else getattr(result, "reason", "no bars")
        )
        raise MarketDataError(f"no usable bars for {symbol}: {reason}")
    out: dict[str, list[Any]] = {"timestamp": [ts.to_pydatetime() for ts in result.index]}
    for column in REQUIRED_COLUMNS:
        out[column] = [float(v) for v in result[column]]
    return out


def _parse_time(text: str | None, path: Path, line: int) -> datetime:
    value = (text or "").strip()
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise CsvError(f"{path}:{line}: timestamp {value!r} is not ISO-8601") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.forecast_types import ForecastInputError, SamplingParams, SeriesInput

    # Failures end in cli.main: a bad CSV or parameter exits 2, no live bars 4, no model 3.
    fs = settings.forecaster
    if args.context < 1 or args.pred_len < 1 or args.samples < 1:
        raise InputError("--context, --pred-len and --samples must be >= 1")
    bars = read_bars_csv(Path(args.csv)) if args.csv else live_bars(args.symbol, args.context, settings)
    take = slice(-args.context, None)
    series = SeriesInput(
        id=Path(args.csv).stem if args.csv else args.symbol,
        timestamps=bars["timestamp"][take],
        open=bars["open"][take],
        high=bars["high"][take],
        low=bars["low"][take],
        close=bars["close"][take],
        volume=bars["volume"][take],
        amount=bars["amount"][take] if "amount" in bars else None,
    )
    params = SamplingParams(
        pred_len=args.pred_len,
        samples=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_context=args.max_context or fs.max_context,
        seed=args.seed,
    )

    from kronos_bot.forecaster.factory import load_model
    from kronos_bot.kronos.predictor import validate_params

    try:
        validate_params(params)  # before paying for the model load
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    forecaster = load_model(
        settings,
        model=args.model,
        tokenizer=args.tokenizer,
        verify=False if args.no_verify else None,
        device=args.device,
        threads=args.threads,
    )
    try:
        (result,) = forecaster.forecast([series], params)
    except (ForecastInputError, ValueError) as exc:  # the bars themselves (NaN, inverted OHLC...)
        raise InputError(str(exc)) from exc

    info = forecaster.model_info()
    used = {
        "source": str(args.csv) if args.csv else f"alpaca:{args.symbol}",
        "context": len(series.timestamps),
        "pred_len": params.pred_len,
        "samples": params.samples,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "max_context": params.max_context,
        "seed": result.extra.get("seed", params.seed),
        "model": _source(info.get("model")),
        "tokenizer": _source(info.get("tokenizer")),
    }
    if args.json:
        print(json.dumps(_as_json(result, used), indent=2))
    else:
        _print_table(result, used, series.timestamps[-1])
    return 0


def _source(entry: object) -> object:
    if isinstance(entry, dict):
        return {k: entry.get(k) for k in ("source", "revision", "weights_sha256", "verified")}
    return entry


def _as_json(result: Any, used: dict[str, object]) -> dict[str, object]:
    return {
        "id": result.id,
        "last_close": result.last_close,
        "candles": [
            {
                "timestamp": c.timestamp.isoformat(),
                "open": c.open,
                "high": c.high,
                "low": c.low,
                "close": c.close,
                "volume": c.volume,
                "amount": c.amount,
            }
            for c in result.candles
        ],
        "p_up": result.p_up,
        "close_quantiles": result.close_quantiles,
        "compute_seconds": round(result.compute_seconds, 4),
        "settings": used,
    }


def _print_table(result: Any, used: dict[str, object], last_time: datetime) -> None:
    model = used["model"]
    source = model.get("source") if isinstance(model, dict) else model
    print(
        f"{result.id}: {used['context']} context bars up to {last_time.isoformat()}, last close {result.last_close:g}"
    )
    print(
        f"model {source}; {used['samples']} sample(s), T={used['temperature']}, top_p={used['top_p']}, "
        f"top_k={used['top_k']}, seed={used['seed']}; {result.compute_seconds:.3f} s"
    )
    header = f"{'timestamp (UTC)':<26}{'open':>12}{'high':>12}{'low':>12}{'close':>12}{'volume':>14}{'amount':>16}"
    quantiles = result.close_quantiles
    show_q = used["samples"] != 1
    if show_q:
        header += f"{'close p10':>12}{'p50':>12}{'p90':>12}"
    print(header)
    for i, c in enumerate(result.candles):
        line = (
            f"{c.timestamp.isoformat():<26}{c.open:>12.6g}{c.high:>12.6g}{c.low:>12.6g}{c.close:>12.6g}"
            f"{c.volume:>14.6g}{c.amount:>16.6g}"
        )
        if show_q:
            line += "".join(f"{quantiles[q][i]:>12.6g}" for q in ("p10", "p50", "p90"))
        print(line)
    print(f"P(up) = {result.p_up:.3f} (share of paths whose last close is above {result.last_close:g})")
