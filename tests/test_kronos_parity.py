"""Our Kronos against the reference's numbers (tests/fixtures/kronos_tiny/expected.json), and the fast
paths (KV cache, shared prefixes, padded batches) against the slow exact one."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from kronos_bot.forecast_types import SamplingParams, SeriesInput
from kronos_bot.kronos.predictor import KronosPredictor, load_forecaster, normalize, time_features

TINY = Path(__file__).resolve().parent / "fixtures" / "kronos_tiny"
COLUMNS = ("open", "high", "low", "close", "volume", "amount")
RTOL = 1e-4
# Absolute floor only for values that are ~0 (relative error is meaningless there).
ATOL = 1e-6


@lru_cache(maxsize=1)
def expected() -> dict:
    return json.loads((TINY / "expected.json").read_text())


@lru_cache(maxsize=1)
def bars() -> list[dict]:
    with (TINY / "bars.csv").open() as fh:
        return [
            {"timestamp": datetime.fromisoformat(r["timestamp"]), **{c: float(r[c]) for c in COLUMNS}}
            for r in csv.DictReader(fh)
        ]


def series(start: int, length: int, sid: str = "BTC/USD") -> SeriesInput:
    rows = bars()[start : start + length]
    return SeriesInput(
        id=sid,
        timestamps=[r["timestamp"] for r in rows],
        **{c: [r[c] for r in rows] for c in COLUMNS},  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def predictor() -> KronosPredictor:
    return load_forecaster(str(TINY / "model"), str(TINY / "tokenizer"), verify=False, threads=1)


def context_tensors(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    rows = bars()[:n]
    values = np.array([[r[c] for c in COLUMNS] for r in rows])
    x, _, _ = normalize(values)
    stamps = time_features([r["timestamp"] for r in rows])
    return torch.from_numpy(x)[None], torch.from_numpy(stamps)[None]


def test_normalized_input_matches() -> None:
    x, _ = context_tensors()
    np.testing.assert_allclose(x[0].numpy(), np.array(expected()["normalized_input"]), rtol=1e-6, atol=1e-7)


def test_token_ids_are_equal(predictor: KronosPredictor) -> None:
    x, _ = context_tensors()
    with torch.inference_mode():
        s1, s2 = predictor.tokenizer.encode(x)
    assert s1[0].tolist() == expected()["s1_ids"]
    assert s2[0].tolist() == expected()["s2_ids"]


def test_decoded_values_match(predictor: KronosPredictor) -> None:
    s1 = torch.tensor([expected()["s1_ids"]])
    s2 = torch.tensor([expected()["s2_ids"]])
    with torch.inference_mode():
        decoded = predictor.tokenizer.decode_full(s1, s2)[0].numpy()
    np.testing.assert_allclose(decoded, np.array(expected()["decoded"]), rtol=RTOL, atol=ATOL)


def test_s1_and_s2_logits_match(predictor: KronosPredictor) -> None:
    _, stamps = context_tensors()
    s1 = torch.tensor([expected()["s1_ids"]])
    s2 = torch.tensor([expected()["s2_ids"]])
    model = predictor.model
    with torch.inference_mode():
        hidden, _ = model.forward_full(s1, s2, stamps)
        s1_logits = model.s1_logits(hidden)[0].numpy()
        chosen = int(s1_logits[-1].argmax())
        s2_logits = model.s2_logits_full(hidden, torch.tensor([60]), torch.tensor([chosen]))[0].numpy()
    np.testing.assert_allclose(s1_logits, np.array(expected()["s1_logits"]), rtol=RTOL, atol=ATOL)
    assert chosen == expected()["s2_given_s1"]
    np.testing.assert_allclose(s2_logits, np.array(expected()["s2_logits_last"]), rtol=RTOL, atol=ATOL)


def candles_array(forecast: object) -> np.ndarray:
    return np.array([[getattr(c, k) for k in COLUMNS] for c in forecast.candles])  # type: ignore[attr-defined]


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "recomputed"])
@pytest.mark.parametrize("case", [c["name"] for c in expected()["predict_cases"]])
def test_greedy_predict_cases(predictor: KronosPredictor, case: str, use_cache: bool) -> None:
    spec = next(c for c in expected()["predict_cases"] if c["name"] == case)
    starts = spec.get("starts", [0])
    params = SamplingParams(
        pred_len=spec["pred_len"], samples=1, top_k=spec["top_k"], top_p=1.0, max_context=spec["max_context"], seed=0
    )
    inputs = [series(s, spec["context_len"], f"s{s}") for s in starts]
    results = predictor.forecast(inputs, params, use_cache=use_cache)
    want = np.array(spec["predicted"]).reshape(len(starts), spec["pred_len"], len(COLUMNS))
    for result, start, expected_candles in zip(results, starts, want, strict=True):
        np.testing.assert_allclose(candles_array(result), expected_candles, rtol=RTOL)
        # The future timestamps continue the hourly bars.
        first = start + spec["context_len"]
        future = [r["timestamp"] for r in bars()[first : first + spec["pred_len"]]]
        assert [c.timestamp for c in result.candles] == future


@pytest.mark.parametrize(
    ("lengths", "pred_len", "max_context", "samples"),
    [
        ((60, 60), 4, 512, 8),  # the live shape: everything cached, prefixes shared across samples
        ((35, 60, 48), 5, 512, 4),  # different context lengths: right-padding + masks
        ((40, 30), 6, 42, 3),  # the window slides for one series mid-way: cache, then recompute
        ((12,), 12, 12, 2),  # pred_len == max_context: no shared decoder prefix at all
    ],
)
def test_cached_generation_equals_recomputed(
    predictor: KronosPredictor, lengths: tuple[int, ...], pred_len: int, max_context: int, samples: int
) -> None:
    inputs = [series(i * 3, n, f"s{i}") for i, n in enumerate(lengths)]
    params = SamplingParams(
        pred_len=pred_len, samples=samples, temperature=1.0, top_p=0.9, max_context=max_context, seed=11
    )
    fast = predictor.forecast(inputs, params, use_cache=True)
    slow = predictor.forecast(inputs, params, use_cache=False)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(np.array(a.path_closes), np.array(b.path_closes), rtol=1e-5)
        np.testing.assert_allclose(candles_array(a), candles_array(b), rtol=1e-5)


def test_batched_series_equal_their_single_forecasts(predictor: KronosPredictor) -> None:
    """Padding a short series next to a long one does not change its forecast."""
    params = SamplingParams(pred_len=4, samples=1, top_k=1, top_p=1.0, seed=0)
    inputs = [series(0, 25, "short"), series(5, 60, "long"), series(20, 41, "mid")]
    together = predictor.forecast(inputs, params)
    for item, result in zip(inputs, together, strict=True):
        (alone,) = predictor.forecast([item], params)
        np.testing.assert_allclose(candles_array(result), candles_array(alone), rtol=1e-5)


def test_samples_share_the_series_context(predictor: KronosPredictor) -> None:
    """Greedy decoding makes every sample identical; the sample-shared prefix must not mix series."""
    inputs = [series(0, 50, "a"), series(10, 50, "b")]
    one = predictor.forecast(inputs, SamplingParams(pred_len=4, samples=1, top_k=1, seed=0))
    many = predictor.forecast(inputs, SamplingParams(pred_len=4, samples=5, top_k=1, seed=0))
    for a, b in zip(one, many, strict=True):
        assert len(b.path_closes) == 5
        np.testing.assert_allclose(np.array(b.path_closes), np.array(a.path_closes * 5), rtol=1e-5)
        np.testing.assert_allclose(candles_array(a), candles_array(b), rtol=1e-5)
