"""Opt-in (`--run-hub` or KRONOS_BOT_RUN_HUB=1): the real pinned Kronos-small + Tokenizer-base reproduce
the reference repo's own regression outputs (tests/fixtures/official_regression) within 1e-5 relative.

Greedy (top_k=1), one sample, 512 and 256 context bars, 8 predicted bars, max_context 512; the future
timestamps are the CSV's own next rows (5-minute stock bars with market-hours gaps). The CSV's naive
timestamps are wall-clock times; they are labelled UTC so that the time features see the same values.
Downloads ~115 MB into the default Hugging Face cache (or HF_HOME) on first run.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from kronos_bot.forecast_types import SamplingParams, SeriesInput
from kronos_bot.kronos.predictor import KronosPredictor, load_forecaster

DATA = Path(__file__).resolve().parent / "fixtures" / "official_regression"
COLUMNS = ("open", "high", "low", "close", "volume", "amount")
PRED_LEN = 8

pytestmark = pytest.mark.hub


def read(name: str) -> tuple[list[datetime], np.ndarray]:
    with (DATA / name).open() as fh:
        rows = list(csv.DictReader(fh))
    times = [datetime.fromisoformat(r["timestamps"]).replace(tzinfo=UTC) for r in rows]
    return times, np.array([[float(r[c]) for c in COLUMNS] for r in rows])


@lru_cache(maxsize=1)
def real_predictor() -> KronosPredictor:
    return load_forecaster(threads=2)  # pinned Kronos-small + Tokenizer-base, sha256-verified


@pytest.mark.parametrize("context", [512, 256])
def test_official_regression(context: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test session sets HF_HUB_OFFLINE=1 (and huggingface_hub may have read it at import): undo both.
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    times, values = read("regression_input.csv")
    _, expected = read(f"regression_output_{context}.csv")
    series = SeriesInput("regression", times[:context], *(values[:context, i].tolist() for i in range(6)))
    future = times[context : context + PRED_LEN]
    params = SamplingParams(
        pred_len=PRED_LEN, samples=1, temperature=1.0, top_k=1, top_p=1.0, max_context=512, seed=123
    )
    (forecast,) = real_predictor().forecast([series], params, future_timestamps=[future])
    got = np.array([[getattr(c, k) for k in COLUMNS] for c in forecast.candles], dtype=np.float32)
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5)
