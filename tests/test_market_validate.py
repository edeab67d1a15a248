"""validate_bars (pure) and the CSV loader: every rejection reason, the window and the fill policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kronos_bot.config import BarsSettings
from kronos_bot.market import BarsProblem, ValidBars, bars_frame, closed_bars_only, load_bars_csv, validate_bars
from tests.conftest import FIXTURES

NOW = datetime(2024, 12, 31, 23, 10, tzinfo=UTC)
SETTINGS = BarsSettings(count=60, max_missing_bars=3, max_last_bar_age_minutes=90)


def btc() -> pd.DataFrame:
    return load_bars_csv(FIXTURES / "bars" / "BTC_USD_1h.csv")


def check(df: pd.DataFrame, settings: BarsSettings = SETTINGS, now: datetime = NOW) -> ValidBars | BarsProblem:
    return validate_bars("BTC/USD", df, now, settings)


def reason(df: pd.DataFrame, settings: BarsSettings = SETTINGS, now: datetime = NOW) -> str:
    result = check(df, settings, now)
    assert isinstance(result, BarsProblem), result
    return result.reason


def test_csv_loader_shape() -> None:
    df = btc()
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert len(df) == 500 and str(df.index.tz) == "UTC" and df.index.name == "timestamp"
    assert df.index[0] == pd.Timestamp("2024-12-11T04:00Z") and df.index[-1] == pd.Timestamp("2024-12-31T23:00Z")
    assert df.loc[pd.Timestamp("2024-12-31T23:00Z"), "close"] == 93576.0


def test_csv_loader_names_missing_columns(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,1,1,1\n")
    with pytest.raises(ValueError, match="volume"):
        load_bars_csv(path)


def test_valid_bars_return_exactly_count_closed_hours() -> None:
    result = check(btc())
    assert isinstance(result, ValidBars) and result.filled == ()
    assert len(result.df) == 60
    assert result.df.index[-1] == pd.Timestamp("2024-12-31T22:00Z")
    assert (result.df.index[1:] - result.df.index[:-1] == pd.Timedelta(hours=1)).all()


def test_closed_bars_only_drops_current_and_future_bars() -> None:
    df = btc()
    assert closed_bars_only(df, NOW).index[-1] == pd.Timestamp("2024-12-31T22:00Z")
    assert closed_bars_only(df, datetime(2025, 1, 1, tzinfo=UTC)).index[-1] == pd.Timestamp("2024-12-31T23:00Z")
    assert closed_bars_only(df, datetime(2024, 12, 31, 12, 59, tzinfo=UTC)).index[-1] == pd.Timestamp(
        "2024-12-31T11:00Z"
    )


def test_empty_and_bad_shapes() -> None:
    assert reason(btc().iloc[:0]) == "no_bars"
    assert reason(btc().drop(columns=["volume"])) == "bad_columns"
    naive = btc()
    naive.index = naive.index.tz_localize(None)
    assert reason(naive) == "bad_columns"
    # only the in-progress bar
    assert reason(btc().iloc[-1:]) == "no_bars"


def test_timestamps_must_strictly_increase() -> None:
    df = btc()
    swapped = df.iloc[[*range(450), 451, 450, *range(452, 500)]]
    assert reason(swapped) == "not_increasing"
    duplicated = pd.concat([df.iloc[:460], df.iloc[459:]])
    result = check(duplicated)
    assert isinstance(result, BarsProblem) and result.reason == "not_increasing"
    assert "2024-12-30T07:00Z" in result.detail  # row 459 repeated


def test_misaligned_timestamps() -> None:
    df = btc()
    df.index = df.index + pd.Timedelta(minutes=1)
    assert reason(df) == "misaligned"


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume"])
def test_nan_anywhere_rejected(column: str) -> None:
    df = btc()
    df.iloc[480, df.columns.get_loc(column)] = np.nan
    result = check(df)
    assert isinstance(result, BarsProblem) and result.reason == "nan" and column in result.detail


def test_infinite_and_nonpositive_prices() -> None:
    df = btc()
    df.iloc[470, df.columns.get_loc("close")] = np.inf
    assert reason(df) == "nan"
    df = btc()
    df.iloc[470, :4] = 0.0
    assert reason(df) == "nonpositive_price"


def test_high_and_low_consistency() -> None:
    df = btc()
    df.iloc[470, df.columns.get_loc("high")] = df.iloc[470]["close"] - 1
    result = check(df)
    assert isinstance(result, BarsProblem) and result.reason == "ohlc_inconsistent" and "high" in result.detail
    df = btc()
    df.iloc[470, df.columns.get_loc("low")] = df.iloc[470]["open"] + 1
    result = check(df)
    assert isinstance(result, BarsProblem) and result.reason == "ohlc_inconsistent" and "low" in result.detail
    # equality is fine (a bar that never moved, at the market's price: a bar at 100 in a 93,000 market
    # would be a range_jump, see test_market_sanity.py)
    df = btc()
    df.iloc[470, :4] = df.iloc[469]["close"]
    assert isinstance(check(df), ValidBars)


def test_negative_volume() -> None:
    df = btc()
    df.iloc[470, df.columns.get_loc("volume")] = -1.0
    assert reason(df) == "negative_volume"


def test_zero_volume_is_fine() -> None:
    df = btc()
    df.iloc[470, df.columns.get_loc("volume")] = 0.0
    assert isinstance(check(df), ValidBars)


def test_stale_last_bar() -> None:
    df = btc().loc[: pd.Timestamp("2024-12-31T21:00Z")]  # closed 22:00 -> 70 min before NOW: fine
    result = check(df)
    assert isinstance(result, ValidBars) and result.filled == (datetime(2024, 12, 31, 22, tzinfo=UTC),)
    df = btc().loc[: pd.Timestamp("2024-12-31T20:00Z")]  # closed 21:00 -> 130 min: stale
    assert reason(df) == "stale"
    assert isinstance(check(df, BarsSettings(max_last_bar_age_minutes=150)), ValidBars)


def test_too_few_bars() -> None:
    result = check(btc().iloc[-40:])
    assert isinstance(result, BarsProblem) and result.reason == "too_few_bars"
    assert "39 of 60" in result.detail


def test_gap_fill_uses_previous_close_and_zero_volume() -> None:
    df = btc()
    holes = [pd.Timestamp("2024-12-31T05:00Z"), pd.Timestamp("2024-12-31T06:00Z"), pd.Timestamp("2024-12-31T15:00Z")]
    result = check(df.drop(index=holes))
    assert isinstance(result, ValidBars)
    assert result.filled == tuple(ts.to_pydatetime() for ts in holes)
    out = result.df
    assert len(out) == 60
    prev_close = df.loc[pd.Timestamp("2024-12-31T04:00Z"), "close"]
    for ts in holes[:2]:
        assert out.loc[ts].tolist() == [prev_close] * 4 + [0.0]
    untouched = out.index.difference(pd.DatetimeIndex(holes))
    pd.testing.assert_frame_equal(out.loc[untouched], df.loc[untouched], check_freq=False)


def test_gap_just_before_the_window_is_filled_from_earlier_bars() -> None:
    df = btc()
    first = pd.Timestamp("2024-12-31T22:00Z") - pd.Timedelta(hours=59)
    result = check(df.drop(index=[first]))
    assert isinstance(result, ValidBars) and result.df.index[0] == first
    assert result.df.loc[first, "close"] == df.loc[first - pd.Timedelta(hours=1), "close"]


def test_missing_limits_and_reject_policy() -> None:
    df = btc()
    four = [pd.Timestamp("2024-12-31T22:00Z") - pd.Timedelta(hours=h) for h in (3, 8, 13, 21)]
    assert reason(df.drop(index=four)) == "too_many_missing"
    assert isinstance(check(df.drop(index=four[:3])), ValidBars)
    assert reason(df.drop(index=four[:1]), BarsSettings(missing_policy="reject")) == "gaps_rejected"
    assert reason(df.drop(index=four[:1]), BarsSettings(max_missing_bars=0)) == "too_many_missing"


def test_gaps_outside_the_window_do_not_count() -> None:
    df = btc()
    old = [pd.Timestamp("2024-12-20T00:00Z") + pd.Timedelta(hours=h) for h in range(10)]
    result = check(df.drop(index=old))
    assert isinstance(result, ValidBars) and result.filled == ()


def test_bars_frame_builder() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    df = bars_frame(
        [t0, t0 + timedelta(hours=1)],
        {"open": [1, 2], "high": [2, 3], "low": [1, 2], "close": [2, 3], "volume": [5, 6]},
    )
    assert str(df.index.tz) == "UTC" and df["close"].dtype == float


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_bars("BTC/USD", btc(), datetime(2024, 12, 31, 23, 10), SETTINGS)


def _reference_window(
    df: pd.DataFrame, now: datetime, settings: BarsSettings
) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """The fill rule written the plain pandas way: the window's hours, previous close where a bar is missing."""
    closed = df[df.index + pd.Timedelta(hours=1) <= pd.Timestamp(now)]
    end = pd.Timestamp(now).floor("h") - pd.Timedelta(hours=1)
    window = pd.date_range(end=end, periods=settings.count, freq="1h", tz=UTC)
    full = closed.reindex(closed.index.union(window))
    missing = [ts for ts in window if ts not in closed.index]
    close = full["close"].ffill()
    for ts in missing:
        full.loc[ts, ["open", "high", "low", "close"]] = close.loc[ts]
        full.loc[ts, "volume"] = 0.0
    return full.loc[window], missing


@pytest.mark.parametrize("seed", range(25))
def test_random_gaps_match_the_plain_pandas_fill_rule(seed: int) -> None:
    """Random holes (runs of them too, and at the very end of the window) and random `now` minutes."""
    rng = np.random.default_rng(seed)
    df = btc()
    settings = BarsSettings(count=60, max_missing_bars=8, max_last_bar_age_minutes=600)
    now = NOW - timedelta(hours=int(rng.integers(0, 30)), minutes=int(rng.integers(0, 60)))
    end = pd.Timestamp(now).floor("h") - pd.Timedelta(hours=1)
    start_hole = int(rng.integers(0, 4))  # hours missing at the end of the window (no bar since)
    holes = {end - pd.Timedelta(hours=h) for h in range(start_hole)}
    for _ in range(int(rng.integers(0, 3))):
        first = end - pd.Timedelta(hours=int(rng.integers(start_hole + 1, 59)))
        holes |= {first - pd.Timedelta(hours=h) for h in range(int(rng.integers(1, 3)))}
    holes = {h for h in holes if h in df.index and h >= end - pd.Timedelta(hours=59)}
    result = check(df.drop(index=sorted(holes)), settings, now)
    assert isinstance(result, ValidBars), result
    expected, missing = _reference_window(df.drop(index=sorted(holes)), now, settings)
    assert result.filled == tuple(ts.to_pydatetime() for ts in missing)
    assert len(result.filled) == len(holes)
    np.testing.assert_array_equal(result.df.to_numpy(), expected.to_numpy())
    assert list(result.df.index) == list(expected.index) and result.df.index.name == "timestamp"
