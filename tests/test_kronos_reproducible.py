"""A forecast depends on its window, its settings and its seed only: never on what else is in the batch.

Issue #13: one generator drawn by every row made a series' paths depend on its batch mates, so the same
window forecast differently in a backtest (16 series per call) and live (4 per call).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from kronos_bot.forecast_types import SamplingParams
from kronos_bot.kronos.predictor import KronosPredictor, load_forecaster, stream_seed
from tests.forecaster_support import make_series

TINY = Path(__file__).resolve().parent / "fixtures" / "kronos_tiny"
PARAMS = SamplingParams(pred_len=4, samples=16, temperature=1.0, top_p=0.9, seed=7)


@pytest.fixture(scope="module")
def predictor() -> KronosPredictor:
    return load_forecaster(str(TINY / "model"), str(TINY / "tokenizer"), verify=False, threads=1)


def _closes(forecast: object) -> np.ndarray:
    return np.array(forecast.path_closes)  # type: ignore[attr-defined]


def test_same_series_in_different_batches_and_positions_gives_the_same_paths(predictor: KronosPredictor) -> None:
    target = make_series("BTC/USD", bars=60, offset=5)
    others = [make_series(f"X{i}", bars=60, offset=i) for i in range(5)]
    alone = predictor.forecast([target], PARAMS)[0]
    batches = [
        [target, *others[:3]],  # first of four (the live shape)
        [*others, target],  # last of six
        [others[0], target, others[1]],  # in the middle
    ]
    for batch in batches:
        [mine] = [f for f in predictor.forecast(batch, PARAMS) if f.id == "BTC/USD"]
        # The same random draws: the same paths up to the last float bit a different GEMM shape may move.
        np.testing.assert_allclose(_closes(mine), _closes(alone), rtol=1e-6, atol=0)
        assert mine.p_up == alone.p_up
        assert mine.extra["seed"] == alone.extra["seed"] == 7


def test_the_stream_follows_the_window_and_the_seed(predictor: KronosPredictor) -> None:
    series = make_series("ETH/USD", bars=60, offset=3)
    a = predictor.forecast([series], PARAMS)[0]
    renamed = replace(series, id="SOL/USD")
    b = predictor.forecast([renamed], PARAMS)[0]
    assert not np.allclose(_closes(a), _closes(b))  # another series id: another stream
    shifted = make_series("ETH/USD", bars=60, offset=4)
    assert stream_seed(7, "ETH/USD", series.timestamps[-1]) != stream_seed(7, "ETH/USD", shifted.timestamps[-1])
    elsewhere = series.timestamps[-1].astimezone(timezone(timedelta(hours=2)))  # the same instant
    assert stream_seed(7, "ETH/USD", series.timestamps[-1]) == stream_seed(7, "ETH/USD", elsewhere)


def test_an_unseeded_forecast_records_the_seed_that_recomputes_it(predictor: KronosPredictor) -> None:
    series = make_series("BTC/USD", bars=60, offset=2)
    fresh = predictor.forecast([series, make_series("X", bars=60)], SamplingParams(pred_len=4, samples=8))[0]
    seed = fresh.extra["seed"]
    assert isinstance(seed, int)
    again = predictor.forecast([series], SamplingParams(pred_len=4, samples=8, seed=seed))[0]
    np.testing.assert_allclose(_closes(again), _closes(fresh), rtol=1e-6)
