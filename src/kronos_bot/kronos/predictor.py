"""`KronosPredictor`: the in-process `Forecaster` — validation, normalization, generation, summaries.

Everything a caller can get wrong is checked before any tensor is built, and reported with the
series id (`ForecastInputError`), so one bad symbol never costs a model pass or yields a silent
garbage forecast. The numerical pipeline follows the reference `predict` (SPEC.md): per-series
z-score over the context (population std, +1e-5, clip ±5), amount rule, minute/hour/weekday/day/month
time features (UTC), sampling, mean over paths, de-normalization.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from kronos_bot.forecast_types import Candle, ForecastInputError, SamplingParams, SeriesForecast, SeriesInput

from .config import KronosConfigError, PredictorConfig, TokenizerConfig, config_to_dict, load_config
from .generate import GenerationInput, RowStreams, SamplingSpec, generate
from .hub import DEFAULT_MODEL, CheckpointFiles, ModelLoadError
from .identity import ResolvedCheckpoints, forecaster_identity, resolve_checkpoints
from .model import KronosPredictorModel, KronosTokenizer
from .weights import WeightsError, build_empty, load_weights

ConfigT = TypeVar("ConfigT", PredictorConfig, TokenizerConfig)
ModuleT = TypeVar("ModuleT", KronosPredictorModel, KronosTokenizer)

COLUMNS = ("open", "high", "low", "close", "volume", "amount")
PRICE_COLUMNS = ("open", "high", "low", "close")
NORM_EPS = 1e-5
DEFAULT_CLIP = 5.0
# Two bars are the least that define a bar interval (for future timestamps) and a spread.
DEFAULT_MIN_CONTEXT_BARS = 2
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}


@dataclass(frozen=True)
class PreparedSeries:
    """One validated series ready for the model."""

    id: str
    normalized: np.ndarray  # [L, 6] float32, clipped
    mean: np.ndarray  # [6] float32
    std: np.ndarray  # [6] float32
    context_stamps: np.ndarray  # [L, 5] int64
    future_stamps: np.ndarray  # [P, 5] int64
    future_timestamps: list[datetime]
    last_close: float
    last_timestamp: datetime  # the last context bar's (open) time: part of the series' random stream


def stream_seed(seed: int, series_id: str, last_timestamp: datetime) -> int:
    """The seed of one series' random stream: a function of the run's seed, the series and its window's
    last bar, so the same window with the same seed gives the same paths in any batch, live or backtest."""
    key = f"{seed}|{series_id}|{last_timestamp.astimezone(UTC).isoformat()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") & (2**63 - 1)


def time_features(timestamps: Sequence[datetime]) -> np.ndarray:
    """[L, 5] int64: minute, hour, weekday (Monday = 0), day of month, month, all in UTC."""
    utc = [ts.astimezone(UTC) for ts in timestamps]
    return np.array([[t.minute, t.hour, t.weekday(), t.day, t.month] for t in utc], dtype=np.int64).reshape(-1, 5)


def infer_bar_interval(timestamps: Sequence[datetime]) -> timedelta:
    """The most common gap between consecutive bars (smallest on ties), robust to a few missing bars."""
    gaps = Counter(b - a for a, b in itertools.pairwise(timestamps))
    best = max(gaps.values())
    return min(gap for gap, count in gaps.items() if count == best)


def normalize(values: np.ndarray, clip: float = DEFAULT_CLIP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference z-score in float32: (x - mean) / (std + 1e-5), clipped; returns (x̂, mean, std).

    Column-major on purpose: the reference gets its array from `DataFrame.values`, which is
    column-major, and numpy's float32 mean/std then sum each column pairwise. A row-major array is
    summed row by row instead, whose rounding moves the normalized inputs by up to ~1e-4 — enough to
    flip a token bit and diverge from the reference.
    """
    x = np.asfortranarray(values, dtype=np.float32)
    mean = np.mean(x, axis=0)
    std = np.std(x, axis=0)
    return np.clip((x - mean) / (std + NORM_EPS), -clip, clip), mean, std


def validate_params(params: SamplingParams) -> SamplingSpec:
    """Check generation settings (not series-specific, so a plain ValueError)."""
    if params.pred_len < 1:
        raise ValueError(f"pred_len must be >= 1, got {params.pred_len}")
    if params.samples < 1:
        raise ValueError(f"samples must be >= 1, got {params.samples}")
    if params.max_context < 1:
        raise ValueError(f"max_context must be >= 1, got {params.max_context}")
    if params.pred_len > params.max_context:
        raise ValueError(f"pred_len={params.pred_len} exceeds max_context={params.max_context}")
    return SamplingSpec(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)


def prepare_series(
    series: SeriesInput,
    params: SamplingParams,
    *,
    min_context_bars: int = DEFAULT_MIN_CONTEXT_BARS,
    future_timestamps: Sequence[datetime] | None = None,
    clip: float = DEFAULT_CLIP,
) -> PreparedSeries:
    """Validate one series and turn it into model inputs; every problem raises ForecastInputError."""
    sid = series.id

    def fail(problem: str) -> ForecastInputError:
        return ForecastInputError(sid, problem)

    n = len(series.timestamps)
    columns: dict[str, Sequence[float] | None] = {
        "open": series.open,
        "high": series.high,
        "low": series.low,
        "close": series.close,
        "volume": series.volume,
        "amount": series.amount,
    }
    sizes = {name: len(col) for name, col in columns.items() if col is not None}
    if any(size != n for size in sizes.values()):
        raise fail("mismatched lengths: " + ", ".join(f"{k}={v}" for k, v in {"timestamps": n, **sizes}.items()))
    if n < max(min_context_bars, 1):
        raise fail(f"has {n} bars, at least {min_context_bars} are needed")
    if n > params.max_context:
        raise fail(f"has {n} bars, more than max_context={params.max_context}; pass only the most recent bars")
    timestamps = list(series.timestamps)
    _check_timestamps(timestamps, "timestamps", fail)

    arrays: dict[str, np.ndarray] = {}
    for name, col in columns.items():
        if col is None:
            continue
        try:
            arr = np.asarray(col, dtype=np.float64).reshape(n)
        except (TypeError, ValueError) as exc:
            raise fail(f"column {name} is not numeric: {exc}") from exc
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(f"NaN or infinite {name} at bar {i} ({timestamps[i].isoformat()})")
        arrays[name] = arr
    for name in PRICE_COLUMNS:
        bad = arrays[name] <= 0
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(f"non-positive {name} {arrays[name][i]} at bar {i} ({timestamps[i].isoformat()})")
    inverted = arrays["high"] < arrays["low"]
    if inverted.any():
        i = int(np.argmax(inverted))
        raise fail(f"high {arrays['high'][i]} < low {arrays['low'][i]} at bar {i} ({timestamps[i].isoformat()})")
    for name in ("volume", "amount"):
        if name in arrays and (arrays[name] < 0).any():
            i = int(np.argmax(arrays[name] < 0))
            raise fail(f"negative {name} at bar {i} ({timestamps[i].isoformat()})")

    # Reference amount rule: no volume -> volume = amount = 0; no amount -> volume x mean price.
    if "volume" not in arrays:
        arrays["volume"] = np.zeros(n)
        arrays["amount"] = np.zeros(n)
    elif "amount" not in arrays:
        mean_price = (arrays["open"] + arrays["high"] + arrays["low"] + arrays["close"]) / 4.0
        arrays["amount"] = arrays["volume"] * mean_price

    if future_timestamps is None:
        if n < 2:
            raise fail("needs at least 2 bars to infer the bar interval for future timestamps")
        step = infer_bar_interval(timestamps)
        future = [timestamps[-1] + step * (k + 1) for k in range(params.pred_len)]
    else:
        future = list(future_timestamps)
        if len(future) != params.pred_len:
            raise fail(f"got {len(future)} future timestamps for pred_len={params.pred_len}")
        _check_timestamps(future, "future timestamps", fail)
    future = [ts.astimezone(UTC) for ts in future]

    values = np.stack([arrays[name] for name in COLUMNS], axis=1)
    normalized, mean, std = normalize(values, clip)
    return PreparedSeries(
        id=sid,
        normalized=normalized,
        mean=mean,
        std=std,
        context_stamps=time_features(timestamps),
        future_stamps=time_features(future),
        future_timestamps=future,
        last_close=float(arrays["close"][-1]),
        last_timestamp=timestamps[-1],
    )


def _check_timestamps(timestamps: list[datetime], what: str, fail: Callable[[str], ForecastInputError]) -> None:
    for i, ts in enumerate(timestamps):
        if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
            raise fail(f"{what}[{i}] = {ts!r} is not a timezone-aware datetime")
    for i in range(1, len(timestamps)):
        if timestamps[i] <= timestamps[i - 1]:
            raise fail(f"{what} are not strictly increasing at bar {i} ({timestamps[i].isoformat()})")


class KronosPredictor:
    """Forecasts batches of series with our Kronos implementation; implements `Forecaster`."""

    def __init__(
        self,
        model: KronosPredictorModel,
        tokenizer: KronosTokenizer,
        *,
        device: str | torch.device = "cpu",
        min_context_bars: int = DEFAULT_MIN_CONTEXT_BARS,
        clip: float = DEFAULT_CLIP,
        info: dict[str, object] | None = None,
    ) -> None:
        if model.config.s1_bits != tokenizer.config.s1_bits or model.config.s2_bits != tokenizer.config.s2_bits:
            raise ModelLoadError(
                f"tokenizer bits (s1={tokenizer.config.s1_bits}, s2={tokenizer.config.s2_bits}) do not match the "
                f"model's (s1={model.config.s1_bits}, s2={model.config.s2_bits}): wrong tokenizer for this model"
            )
        if tokenizer.config.d_in != len(COLUMNS):
            raise ModelLoadError(f"tokenizer d_in={tokenizer.config.d_in}, expected {len(COLUMNS)} (OHLCV + amount)")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer.to(self.device).eval()
        self.min_context_bars = min_context_bars
        self.clip = clip
        self._info = dict(info or {})

    def model_info(self) -> dict[str, object]:
        return forecaster_identity(
            self._info,
            config_to_dict(self.model.config),
            config_to_dict(self.tokenizer.config),
            str(self.device),
            torch.get_num_threads(),
        )

    def forecast(
        self,
        series: Sequence[SeriesInput],
        params: SamplingParams,
        *,
        future_timestamps: Sequence[Sequence[datetime]] | None = None,
        use_cache: bool = True,
    ) -> list[SeriesForecast]:
        """Forecast every series with `params.samples` paths each, all in one batched generation.

        `future_timestamps` (one list per series) overrides the default continuation of each series'
        bar interval, e.g. for market-hours data with gaps. `use_cache=False` is the slow oracle.
        """
        started = time.perf_counter()
        spec = validate_params(params)
        if future_timestamps is not None and len(future_timestamps) != len(series):
            raise ValueError(f"future_timestamps has {len(future_timestamps)} entries for {len(series)} series")
        prepared = [
            prepare_series(
                s,
                params,
                min_context_bars=self.min_context_bars,
                future_timestamps=None if future_timestamps is None else future_timestamps[i],
                clip=self.clip,
            )
            for i, s in enumerate(series)
        ]
        if not prepared:
            return []
        # A fresh seed is drawn (not torch's global RNG, which we never touch) and reported in `extra`;
        # each series then draws from its own stream, derived from (seed, series id, last bar time).
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        generator = RowStreams(
            [
                torch.Generator(device=self.device).manual_seed(stream_seed(seed, p.id, p.last_timestamp))
                for p in prepared
            ]
        )
        predictions = (
            generate(
                self.tokenizer,
                self.model,
                self._batch(prepared, params.pred_len),
                pred_len=params.pred_len,
                samples=params.samples,
                spec=spec,
                max_context=params.max_context,
                generator=generator,
                use_cache=use_cache,
            )
            .cpu()
            .numpy()
        )  # [B, S, P, 6] normalized
        elapsed = time.perf_counter() - started
        return [_summarize(p, predictions[i], seed, params.samples, elapsed) for i, p in enumerate(prepared)]

    def _batch(self, prepared: list[PreparedSeries], pred_len: int) -> GenerationInput:
        lengths = [p.normalized.shape[0] for p in prepared]
        lmax = max(lengths)
        x = np.zeros((len(prepared), lmax, len(COLUMNS)), dtype=np.float32)
        stamps = np.zeros((len(prepared), lmax + pred_len, 5), dtype=np.int64)
        for i, p in enumerate(prepared):
            n = lengths[i]
            x[i, :n] = p.normalized
            stamps[i, :n] = p.context_stamps
            stamps[i, n : n + pred_len] = p.future_stamps
        return GenerationInput(
            x=torch.from_numpy(x).to(self.device),
            lengths=torch.tensor(lengths, dtype=torch.long, device=self.device),
            stamps=torch.from_numpy(stamps).to(self.device),
        )


def _summarize(p: PreparedSeries, paths: np.ndarray, seed: int, samples: int, elapsed: float) -> SeriesForecast:
    """Mean candles (averaged in normalized space like the reference), path closes, P(up), quantiles."""
    scale = p.std + np.float32(NORM_EPS)
    mean_candles = np.mean(paths, axis=0) * scale + p.mean  # [P, 6]
    closes = paths[:, :, 3] * scale[3] + p.mean[3]  # [S, P]
    candles = [Candle(ts, *(float(v) for v in row)) for ts, row in zip(p.future_timestamps, mean_candles, strict=True)]
    quantiles = {
        name: [float(v) for v in np.quantile(closes.astype(np.float64), q, axis=0)] for name, q in QUANTILES.items()
    }
    return SeriesForecast(
        id=p.id,
        last_close=p.last_close,
        candles=candles,
        path_closes=[[float(v) for v in row] for row in closes],
        p_up=float(np.mean(closes[:, -1] > p.last_close)),
        close_quantiles=quantiles,
        compute_seconds=elapsed,
        extra={"seed": seed, "samples": samples},
    )


def load_forecaster(
    model: str = DEFAULT_MODEL,
    tokenizer: str | None = None,
    *,
    model_revision: str | None = None,
    tokenizer_revision: str | None = None,
    cache_dir: str | Path | None = None,
    verify: bool = True,
    local_files_only: bool | None = None,
    device: str = "cpu",
    threads: int | None = None,
    min_context_bars: int = DEFAULT_MIN_CONTEXT_BARS,
    model_sha256: tuple[str, str] | None = None,
    tokenizer_sha256: tuple[str, str] | None = None,
    progress: bool | None = None,
) -> KronosPredictor:
    """Resolve (download if allowed), verify and load a predictor + tokenizer; never random weights.

    `model`/`tokenizer` are Hub repo ids or local directories; `tokenizer=None` picks the tokenizer the
    model is known to pair with. `*_sha256` are (config.json, model.safetensors) expected hashes for
    checkpoints we have no pinned hashes for. `threads` sets torch's intra-op thread count.
    """
    resolved = resolve_checkpoints(
        model,
        tokenizer,
        model_revision=model_revision,
        tokenizer_revision=tokenizer_revision,
        cache_dir=cache_dir,
        verify=verify,
        local_files_only=local_files_only,
        model_sha256=model_sha256,
        tokenizer_sha256=tokenizer_sha256,
        progress=progress,
    )
    return build_forecaster(resolved, device=device, threads=threads, min_context_bars=min_context_bars)


def build_forecaster(
    resolved: ResolvedCheckpoints,
    *,
    device: str = "cpu",
    threads: int | None = None,
    min_context_bars: int = DEFAULT_MIN_CONTEXT_BARS,
) -> KronosPredictor:
    """Build the predictor from already resolved and verified files (`identity.resolve_checkpoints`)."""
    if threads is not None and threads > 0:
        torch.set_num_threads(threads)
    predictor_model = load_predictor_model(resolved.model, device)
    tokenizer_model = load_tokenizer(resolved.tokenizer, device)
    return KronosPredictor(
        predictor_model, tokenizer_model, device=device, min_context_bars=min_context_bars, info=resolved.info()
    )


def load_predictor_model(files: CheckpointFiles, device: str | torch.device = "cpu") -> KronosPredictorModel:
    """Build the predictor from verified files; config/weights problems become ModelLoadError."""
    return _load_module(files, PredictorConfig, KronosPredictorModel, "predictor", device)


def load_tokenizer(files: CheckpointFiles, device: str | torch.device = "cpu") -> KronosTokenizer:
    """Build the tokenizer from verified files; config/weights problems become ModelLoadError."""
    return _load_module(files, TokenizerConfig, KronosTokenizer, "tokenizer", device)


def _load_module(
    files: CheckpointFiles,
    config_cls: type[ConfigT],
    module_cls: Callable[[ConfigT], ModuleT],
    what: str,
    device: str | torch.device,
) -> ModuleT:
    try:
        config = load_config(config_cls, files.config_path)
        module = build_empty(lambda: module_cls(config), device)
        load_weights(module, files.weights_path)
    except (KronosConfigError, WeightsError) as exc:
        raise ModelLoadError(f"cannot load {what} {files.source}: {exc}") from exc
    return module


__all__ = [
    "KronosPredictor",
    "PreparedSeries",
    "build_forecaster",
    "infer_bar_interval",
    "load_forecaster",
    "load_predictor_model",
    "load_tokenizer",
    "normalize",
    "prepare_series",
    "time_features",
    "validate_params",
]
