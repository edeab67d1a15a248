"""The wire format and content checks shared by the forecaster service and its client (no server)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from kronos_bot.forecast_types import SamplingParams
from kronos_bot.forecaster.schemas import (
    ForecastRequest,
    check_series,
    find_problems,
    request_payload,
    series_forecast,
    series_out,
)
from tests.forecaster_support import synthetic_series


def test_clean_series_has_no_problem() -> None:
    assert check_series(synthetic_series("A", 60), min_bars=16, max_bars=512) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: replace(s, close=[*s.close[:5], math.nan, *s.close[6:]]), "bar 5"),
        (lambda s: replace(s, close=[*s.close[:5], math.nan, *s.close[6:]]), "close is nan"),
        (lambda s: replace(s, high=[*s.high[:3], 1.0, *s.high[4:]]), "high 1.0 < low"),
        (lambda s: replace(s, open=s.open[:-1]), "wrong lengths: 60 timestamps but open has 59"),
        (lambda s: replace(s, volume=s.volume[:10]), "volume has 10"),
        (lambda s: replace(s, low=[0.0, *s.low[1:]]), "low is 0.0 (prices must be > 0)"),
        (lambda s: replace(s, volume=[-1.0, *s.volume[1:]]), "volume is -1.0"),
        (lambda s: replace(s, timestamps=[s.timestamps[0], *s.timestamps[:-1]]), "not strictly increasing"),
        (lambda s: replace(s, timestamps=[t.replace(tzinfo=None) for t in s.timestamps]), "no timezone"),
        (lambda s: replace(s, close=[*s.close[:-1], math.inf]), "not a finite number"),
    ],
)
def test_each_problem_is_named(change, expected: str) -> None:  # type: ignore[no-untyped-def]
    problem = check_series(change(synthetic_series("A", 60)), min_bars=16, max_bars=512)
    assert problem is not None and expected in problem


def test_bar_counts() -> None:
    assert check_series(synthetic_series("A", 10), min_bars=16) == "too few bars: 10 < 16"
    assert check_series(synthetic_series("A", 70), max_bars=64) == "too many bars: 70 > max_context 64"


def test_find_problems_reports_every_bad_series_and_duplicates() -> None:
    good, bad = synthetic_series("GOOD", 30), synthetic_series("BAD", 30)
    bad = replace(bad, high=[0.5] * 30)
    problems = find_problems([good, bad, synthetic_series("GOOD", 30)])
    assert [(p.series, p.problem) for p in problems] == [
        ("BAD", "bar 0 (2024-01-01T00:00:00+00:00): high 0.5 < low 99.0"),
        ("GOOD", "duplicate series id in one request"),
    ]


def test_payload_round_trip_keeps_utc_and_params() -> None:
    series = synthetic_series("ETH/USD", 20)
    plus2 = timezone(timedelta(hours=2))
    series = replace(series, timestamps=[t.astimezone(plus2) for t in series.timestamps])
    params = SamplingParams(pred_len=3, samples=5, temperature=0.7, top_p=0.8, top_k=4, seed=11, max_context=256)
    body = json.dumps(request_payload([series], params), allow_nan=False)
    request = ForecastRequest.model_validate_json(body)
    assert request.cells() == 5 * 20
    inputs, back = request.to_inputs(service_max_context=128)
    assert back == replace(params, max_context=128)  # capped by the service
    assert inputs[0].timestamps[0] == datetime(2024, 1, 1, tzinfo=UTC)
    assert inputs[0].timestamps[0].utcoffset() == timedelta(0)
    assert list(inputs[0].close) == list(series.close)
    assert inputs[0].amount is None


def test_request_rejects_unknown_keys_and_naive_timestamps() -> None:
    body = request_payload([synthetic_series("A", 20)], SamplingParams())
    with pytest.raises(ValueError, match="extra"):
        ForecastRequest.model_validate({**body, "sample": 3})
    body["series"][0]["timestamps"][0] = "2024-01-01T00:00:00"
    with pytest.raises(ValueError, match="timezone"):
        ForecastRequest.model_validate(body)


def test_forecast_round_trip_through_the_wire_types() -> None:
    from kronos_bot.forecast_types import Candle, SeriesForecast

    ts = datetime(2024, 1, 2, 3, tzinfo=UTC)
    forecast = SeriesForecast(
        id="X",
        last_close=1.5,
        candles=[Candle(ts, 1.0, 2.0, 0.5, 1.6, 3.0, 4.0)],
        path_closes=[[1.6], [1.4]],
        p_up=0.5,
        close_quantiles={"p10": [1.42], "p50": [1.5], "p90": [1.58]},
        extra={"seed": 123, "samples": 2},
    )
    wire = series_out(forecast, compute_seconds=0.25)
    back = series_forecast(type(wire).model_validate_json(wire.model_dump_json()))
    assert back == replace(forecast, compute_seconds=0.25)
