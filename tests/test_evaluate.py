"""Forecast evaluation: the scores on hand-made cases, a perfect forecaster, the command with the tiny model."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kronos_bot import cli
from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import BarStore
from kronos_bot.backtest.evaluate import EvaluateOptions, origins, run_evaluate
from kronos_bot.backtest.evaluate_report import table_lines, write_evaluate_report
from kronos_bot.backtest.forecast_scores import (
    CHOPPY,
    DRIFT,
    KRONOS,
    NO_CHANGE,
    TRENDING,
    Outcome,
    drift_forecast,
    efficiency_ratio,
    reliability,
    score,
    score_table,
)
from kronos_bot.backtest.period import Period
from kronos_bot.forecast_types import Candle, SamplingParams, SeriesForecast, SeriesInput
from tests.backtest_support import FIXTURE_BARS, TINY_BTC_ETH_ARGS, fixture_store, settings
from tests.conftest import SHIPPED_CONFIG

HOUR = timedelta(hours=1)
T = datetime(2024, 12, 20, tzinfo=UTC)
PERIOD = Period(datetime(2024, 12, 15, tzinfo=UTC), datetime(2024, 12, 17, tzinfo=UTC))


def outcome(last: float, actual: float, pred: float, p_up: float, **kw: object) -> Outcome:
    return Outcome(
        symbol=str(kw.get("symbol", "BTC/USD")),
        time=T,
        regime=str(kw.get("regime", CHOPPY)),
        last_close=last,
        actual=actual,
        predictions={KRONOS: (pred, p_up)},
    )


def test_scores_on_a_hand_made_case() -> None:
    cases = [
        outcome(100, 102, 101, 1.0),
        outcome(100, 99, 101, 0.75),
        outcome(100, 98, 99, 0.25),
        outcome(100, 100, 100, 0.5),
    ]
    s = score(cases, KRONOS)
    assert s.n == 4
    assert s.hit_rate == 3 / 4  # the second one called up, the market went down
    assert s.brier == pytest.approx((0 + 0.75**2 + 0.25**2 + 0.5**2) / 4)
    assert s.mae_pct == pytest.approx((1 + 2 + 1 + 0) / 4)
    bins = reliability(cases, KRONOS, bins=4)
    assert [b["count"] for b in bins] == [0, 1, 1, 2]
    assert bins[3]["mean_p"] == pytest.approx(0.875) and bins[3]["frequency"] == 0.5
    table = score_table([*cases, outcome(100, 101, 102, 1.0, regime=TRENDING, symbol="ETH/USD")])
    assert table["all"][KRONOS].n == 5 and table[TRENDING][KRONOS].hit_rate == 1.0 and table["ETH/USD"][KRONOS].n == 1


def test_baselines_and_regime_rule() -> None:
    line = [100 + i for i in range(25)]
    assert efficiency_ratio(line) == 1.0
    assert efficiency_ratio([100, 101] * 12 + [100]) == 0.0
    pred, p_up = drift_forecast(line, horizon=4, window=24)
    assert p_up == 1.0 and pred == pytest.approx(124 * math.exp(4 * math.log(124 / 100) / 24))
    assert drift_forecast([100.0] * 30, 4, 24) == (100.0, 0.5)


class PerfectForecaster:
    """Knows the future: every path is the actual closes that follow the window."""

    def __init__(self, store: BarStore) -> None:
        self.store = store

    def model_info(self) -> dict[str, object]:
        return {"backend": "oracle"}

    def forecast(self, series: Sequence[SeriesInput], params: SamplingParams) -> list[SeriesForecast]:
        out = []
        for s in series:
            symbol = s.id.split("@")[0]
            stamps = [s.timestamps[-1] + (k + 1) * HOUR for k in range(params.pred_len)]
            closes = [float(self.store.bar(symbol, ts).close) for ts in stamps]
            candles = [Candle(ts, c, c, c, c, 1.0, 1.0) for ts, c in zip(stamps, closes, strict=True)]
            out.append(
                SeriesForecast(
                    id=s.id,
                    last_close=s.close[-1],
                    candles=candles,
                    path_closes=[closes],
                    p_up=float(closes[-1] > s.close[-1]),
                    close_quantiles={},
                )
            )
        return out


def test_a_perfect_forecaster_scores_hit_rate_one_and_brier_zero(tmp_path: Path) -> None:
    store = fixture_store()
    s = settings(["BTC/USD", "ETH/USD"])
    run = run_evaluate(
        s,
        store,
        PERIOD,
        forecaster=PerfectForecaster(store),
        cache=CacheStore(":memory:"),
        options=EvaluateOptions(horizon=3, stride=2),
    )
    assert len(run.outcomes) == 2 * len(origins(PERIOD, 3, 2))
    summary = write_evaluate_report(run, tmp_path)
    best = summary["scores"]["all"][KRONOS]
    assert (best["hit_rate"], best["brier"], best["mae_pct"]) == (1.0, 0.0, 0.0)
    assert summary["scores"]["all"][NO_CHANGE]["brier"] == 0.25
    assert 0 < summary["scores"]["all"][DRIFT]["hit_rate"] < 1
    assert set(summary["scores"]) >= {"all", "BTC/USD", "ETH/USD"}
    assert (tmp_path / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "pit.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "report.html").read_text()
    for label in ("hit rate (higher is better)", "Brier (lower is better)", "MAE % (lower is better)"):
        assert label in page  # every score says which way is better
    assert "CRPS % (lower is better)" in page and "BSS (higher is better, &gt; 0 beats no-change)" in page
    assert page.count("data:image/png;base64,") == 2 and "<script" not in page  # reliability and PIT, inline
    assert "<td>100.0 %</td>" in page  # the perfect forecaster's hit rate, as in the table on stdout
    assert json.loads((tmp_path / "summary.json").read_text())["origins"] == len(run.outcomes)
    lines = table_lines(summary)
    assert lines[2].split()[:4] == ["all", "kronos", str(len(run.outcomes)), "100.0"]


def test_evaluate_command_shares_the_forecast_cache_with_backtest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "--data",
        str(FIXTURE_BARS),
        "--from",
        "2024-12-20",
        "--to",
        "2024-12-20",
        *TINY_BTC_ETH_ARGS,
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert cli.main(["--config", str(SHIPPED_CONFIG), "backtest", *common, "--out", str(tmp_path / "bt")]) == 0
    capsys.readouterr()
    assert cli.main(["--config", str(SHIPPED_CONFIG), "evaluate", *common, "--out", str(tmp_path / "ev")]) == 0
    printed = capsys.readouterr().out
    assert "forecast quality at +4 h" in printed and "no_change" in printed
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["forecasts"]["computed"] == 0 and summary["forecasts"]["cached"] == summary["origins"] > 0
    assert (tmp_path / "ev" / "calibration.png").exists()
