"""KronosPredictor's contract: validation before compute, reproducible sampling, summaries, time handling."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

import kronos_bot.kronos.predictor as predictor_module
from kronos_bot.forecast_types import Forecaster, ForecastInputError, SamplingParams, SeriesInput
from kronos_bot.kronos.config import TokenizerConfig, config_to_dict, parse_config
from kronos_bot.kronos.generate import SamplingSpec, filtered_probs, sample_from_logits
from kronos_bot.kronos.hub import ModelLoadError
from kronos_bot.kronos.model import KronosTokenizer
from kronos_bot.kronos.predictor import (
    KronosPredictor,
    infer_bar_interval,
    load_forecaster,
    prepare_series,
    time_features,
)
from kronos_bot.kronos.weights import build_empty, random_init

TINY = Path(__file__).resolve().parent / "fixtures" / "kronos_tiny"
COLUMNS = ("open", "high", "low", "close", "volume", "amount")
T0 = datetime(2024, 6, 30, 17, tzinfo=UTC)


@pytest.fixture(scope="module")
def predictor() -> KronosPredictor:
    return load_forecaster(str(TINY / "model"), str(TINY / "tokenizer"), verify=False, threads=1, min_context_bars=8)


def fixture_series(sid: str = "BTC/USD", n: int = 48, **overrides: object) -> SeriesInput:
    with (TINY / "bars.csv").open() as fh:
        rows = list(csv.DictReader(fh))[:n]
    fields: dict[str, object] = {
        "timestamps": [datetime.fromisoformat(r["timestamp"]) for r in rows],
        **{c: [float(r[c]) for r in rows] for c in COLUMNS},
    }
    fields.update(overrides)
    return SeriesInput(id=sid, **fields)  # type: ignore[arg-type]


def test_implements_the_forecaster_protocol(predictor: KronosPredictor) -> None:
    assert isinstance(predictor, Forecaster)
    info = predictor.model_info()
    assert info["tokenizer_config"]["s1_bits"] == 4  # type: ignore[index]
    assert info["threads"] == torch.get_num_threads()


# -- validation ---------------------------------------------------------------------------------------


def with_value(column: str, index: int, value: float) -> list[float]:
    values = list(fixture_series().__dict__[column])
    values[index] = value
    return values


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"close": with_value("close", 5, math.nan)}, r"NaN or infinite close at bar 5"),
        ({"volume": with_value("volume", 7, math.inf)}, r"NaN or infinite volume at bar 7"),
        ({"low": with_value("low", 3, 0.0)}, r"non-positive low 0.0 at bar 3"),
        ({"open": with_value("open", 0, -1.0)}, r"non-positive open"),
        ({"high": with_value("high", 9, 1.0)}, r"high 1.0 < low .* at bar 9"),
        ({"amount": with_value("amount", 2, -5.0)}, r"negative amount at bar 2"),
        ({"close": [1.0] * 47}, r"mismatched lengths: timestamps=48, .*close=47"),
        (
            {"timestamps": [T0.replace(tzinfo=None) + timedelta(hours=i) for i in range(48)]},
            r"timestamps\[0\] = .* is not a timezone-aware datetime",
        ),
        (
            {"timestamps": [T0 + timedelta(hours=i % 40) for i in range(48)]},
            r"timestamps are not strictly increasing at bar 40",
        ),
    ],
    ids=[
        "nan",
        "inf",
        "zero-price",
        "negative-price",
        "high<low",
        "negative-amount",
        "lengths",
        "naive-time",
        "time-order",
    ],
)
def test_bad_series_are_rejected_naming_the_series(
    predictor: KronosPredictor, overrides: dict[str, object], problem: str
) -> None:
    with pytest.raises(ForecastInputError, match=r"series 'ETH/USD': " + problem) as info:
        predictor.forecast([fixture_series("ETH/USD", **overrides)], SamplingParams())
    assert info.value.series_id == "ETH/USD"


def test_too_few_and_too_many_bars(predictor: KronosPredictor) -> None:
    with pytest.raises(ForecastInputError, match="has 5 bars, at least 8 are needed"):
        predictor.forecast([fixture_series(n=5)], SamplingParams())
    with pytest.raises(ForecastInputError, match="has 48 bars, more than max_context=40"):
        predictor.forecast([fixture_series()], SamplingParams(max_context=40))


def test_validation_happens_before_any_compute(predictor: KronosPredictor, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model ran before every series was validated")

    monkeypatch.setattr(predictor_module, "generate", must_not_run)
    bad = fixture_series("BAD", high=with_value("high", 1, 1.0))
    with pytest.raises(ForecastInputError, match="series 'BAD'"):
        predictor.forecast([fixture_series("OK"), bad], SamplingParams())


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(pred_len=0),
        SamplingParams(samples=0),
        SamplingParams(temperature=0.0),
        SamplingParams(top_p=0.0),
        SamplingParams(top_p=1.5),
        SamplingParams(top_k=-1),
        SamplingParams(pred_len=50, max_context=40),
    ],
)
def test_bad_parameters_are_rejected(predictor: KronosPredictor, params: SamplingParams) -> None:
    with pytest.raises(ValueError):
        predictor.forecast([fixture_series(n=20)], params)


def test_mismatched_tokenizer_is_refused(predictor: KronosPredictor) -> None:
    config = parse_config(TokenizerConfig, {**config_to_dict(predictor.tokenizer.config), "s2_bits": 5})
    other = build_empty(lambda: KronosTokenizer(config))
    random_init(other)
    with pytest.raises(ModelLoadError, match="wrong tokenizer"):
        KronosPredictor(predictor.model, other)


# -- sampling -----------------------------------------------------------------------------------------


def test_same_seed_same_paths_different_seed_different_paths(predictor: KronosPredictor) -> None:
    series = [fixture_series("A"), fixture_series("B", n=30)]
    params = SamplingParams(pred_len=4, samples=16, temperature=1.0, top_p=0.9, seed=123)
    first = predictor.forecast(series, params)
    again = predictor.forecast(series, params)
    other = predictor.forecast(series, replace(params, seed=124))
    for a, b in zip(first, again, strict=True):
        assert a.path_closes == b.path_closes and a.candles == b.candles and a.extra["seed"] == 123
    assert any(a.path_closes != c.path_closes for a, c in zip(first, other, strict=True))
    unseeded = predictor.forecast(series, replace(params, seed=None))[0]
    assert isinstance(unseeded.extra["seed"], int)
    reproduced = predictor.forecast(series, replace(params, seed=unseeded.extra["seed"]))[0]
    assert reproduced.path_closes == unseeded.path_closes


def test_sampling_does_not_touch_the_global_rng(predictor: KronosPredictor) -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    predictor.forecast([fixture_series()], SamplingParams(samples=4, seed=1))
    predictor.forecast([fixture_series()], SamplingParams(samples=4, seed=None))
    assert torch.equal(torch.rand(3), expected)


def reference_filter(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The kept-token mask as SPEC.md describes it, written independently with a sort."""
    logits = logits / temperature
    keep = torch.ones_like(logits, dtype=torch.bool)
    if top_k > 0:
        kth = torch.sort(logits, descending=True).values[:, min(top_k, logits.shape[1]) - 1 :][:, :1]
        return logits >= kth
    if top_p < 1.0:
        for row in range(logits.shape[0]):
            order = torch.argsort(logits[row], descending=True)
            probs = torch.softmax(logits[row], -1)[order]
            before = torch.cumsum(probs, 0) - probs  # mass of the tokens ahead of each one
            keep[row, order] = (before <= top_p) | (torch.arange(len(order)) == 0)
    return keep


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"),
    [(1.0, 0, 0.9), (0.7, 0, 0.5), (1.3, 5, 0.9), (1.0, 1, 1.0), (1.0, 0, 1.0), (2.0, 0, 0.99)],
)
def test_filters_keep_exactly_the_reference_tokens(temperature: float, top_k: int, top_p: float) -> None:
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(3)) * 2
    spec = SamplingSpec(temperature=temperature, top_k=top_k, top_p=top_p)
    assert torch.equal(filtered_probs(logits, spec) > 0, reference_filter(logits, temperature, top_k, top_p))


def test_draws_follow_the_filtered_distribution() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).repeat(40_000, 1)
    spec = SamplingSpec(temperature=1.0, top_k=0, top_p=0.8)
    draws = sample_from_logits(logits, spec, torch.Generator().manual_seed(0))
    probs = filtered_probs(logits[:1], spec)[0]
    expected = (probs / probs.sum()).numpy()
    observed = np.bincount(draws.numpy(), minlength=6) / len(draws)
    np.testing.assert_allclose(observed, expected, atol=0.01)
    assert observed[expected == 0].sum() == 0
    greedy = sample_from_logits(logits[:5], SamplingSpec(top_k=1), torch.Generator().manual_seed(1))
    assert greedy.tolist() == [0] * 5


# -- summaries, time, amount --------------------------------------------------------------------------


def test_summary_fields_are_consistent(predictor: KronosPredictor) -> None:
    params = SamplingParams(pred_len=5, samples=20, temperature=1.2, top_p=0.95, seed=9)
    (forecast,) = predictor.forecast([fixture_series()], params)
    closes = np.array(forecast.path_closes)
    assert closes.shape == (20, 5)
    assert forecast.last_close == fixture_series().close[-1]
    assert forecast.p_up == pytest.approx(float(np.mean(closes[:, -1] > forecast.last_close)))
    for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
        np.testing.assert_allclose(forecast.close_quantiles[name], np.quantile(closes, q, axis=0), rtol=1e-6)
    np.testing.assert_allclose([c.close for c in forecast.candles], closes.mean(axis=0), rtol=1e-5)
    assert [c.timestamp for c in forecast.candles] == [
        fixture_series().timestamps[-1] + timedelta(hours=k) for k in range(1, 6)
    ]
    assert forecast.compute_seconds > 0


def test_future_timestamps_continue_the_bar_interval_despite_gaps() -> None:
    stamps = [T0 + timedelta(minutes=15 * i) for i in range(20) if i not in (4, 11)]
    assert infer_bar_interval(stamps) == timedelta(minutes=15)
    n = len(stamps)
    series = SeriesInput("X", stamps, [10.0] * n, [11.0] * n, [9.0] * n, [10.5] * n, [1.0] * n)
    prepared = prepare_series(series, SamplingParams(pred_len=3))
    assert prepared.future_timestamps == [stamps[-1] + timedelta(minutes=15 * k) for k in (1, 2, 3)]


def test_explicit_future_timestamps_are_used(predictor: KronosPredictor) -> None:
    future = [T0 + timedelta(days=30, hours=k) for k in range(4)]
    (forecast,) = predictor.forecast([fixture_series()], SamplingParams(top_k=1), future_timestamps=[future])
    assert [c.timestamp for c in forecast.candles] == future
    with pytest.raises(ForecastInputError, match="got 3 future timestamps for pred_len=4"):
        predictor.forecast([fixture_series()], SamplingParams(top_k=1), future_timestamps=[future[:3]])


def test_time_features_are_taken_in_utc() -> None:
    local = datetime(2024, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))  # = 2024-02-29 23:30 UTC
    assert time_features([local]).tolist() == [[30, 23, 3, 29, 2]]  # Thursday = 3


def test_amount_rule() -> None:
    n = 10
    base = {
        "timestamps": [T0 + timedelta(hours=i) for i in range(n)],
        "open": [10.0 + i for i in range(n)],
        "high": [12.0 + i for i in range(n)],
        "low": [9.0 + i for i in range(n)],
        "close": [11.0 + i for i in range(n)],
    }
    with_volume = prepare_series(SeriesInput("A", volume=[2.0] * n, **base), SamplingParams())  # type: ignore[arg-type]
    mean_price = np.mean([10.5 + i for i in range(n)])
    assert with_volume.mean[5] == pytest.approx(2.0 * mean_price, rel=1e-6)
    no_volume = prepare_series(SeriesInput("B", amount=[5.0] * n, **base), SamplingParams())  # type: ignore[arg-type]
    assert no_volume.mean[4] == 0 and no_volume.mean[5] == 0 and not no_volume.normalized[:, 4:].any()


def test_normalization_is_clipped_and_matches_the_reference_formula() -> None:
    close = [100.0] * 30 + [1000.0]
    n = len(close)
    series = SeriesInput(
        "S",
        [T0 + timedelta(hours=i) for i in range(n)],
        close,
        [c * 1.01 for c in close],
        [c * 0.99 for c in close],
        close,
        [1.0] * n,
    )
    prepared = prepare_series(series, SamplingParams())
    values = np.array(close, dtype=np.float32)
    expected = (values - values.mean()) / (values.std() + 1e-5)
    np.testing.assert_allclose(prepared.normalized[:, 3], np.clip(expected, -5, 5), rtol=1e-5)
    assert prepared.normalized[-1, 3] == 5.0
