"""Backtests grade themselves (#13): skill.json is what `kronos-bot skill --json` prints for the run's
journal, and each ablation variant equals a real run whose ignored gates always say yes."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kronos_bot import cli
from kronos_bot.backtest.ablation import VARIANTS, row
from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.period import Period
from kronos_bot.backtest.runner import run_backtest
from kronos_bot.backtest.summary import build_summary
from kronos_bot.forecast_types import SeriesInput
from tests.backtest_support import FIXTURE_BARS, ScriptedForecaster, fixture_store, settings
from tests.conftest import SHIPPED_CONFIG
from tests.forecaster_support import TINY_MODEL, TINY_TOKENIZER
from tests.test_backtest_run import PERIOD, SYMBOLS


def wavy(s: SeriesInput) -> float:
    """Up two hours in three, down the third: Kronos agrees with the technical gate only sometimes."""
    return -0.01 if s.timestamps[-1].hour % 3 == 0 else 0.02


def test_the_backtest_writes_what_the_skill_command_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["--config", str(SHIPPED_CONFIG), "backtest", "--data", str(FIXTURE_BARS)]
    args += ["--from", "2024-12-20", "--to", "2024-12-21", "--symbols", "BTC", "ETH", "--seed", "3"]
    args += ["--model", str(TINY_MODEL), "--tokenizer", str(TINY_TOKENIZER), "--no-verify", "--threads", "1"]
    args += ["--samples", "4", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--ablate"]
    assert cli.main(args) == 0
    capsys.readouterr()
    skill = json.loads((out / "skill.json").read_text())
    assert cli.main(["--config", str(SHIPPED_CONFIG), "skill", "--journal", str(out / "journal.sqlite"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == skill
    # 48 decision hours x 2 symbols; the bars after the period score its last forecasts too.
    assert skill["overall"]["n"] == 2 * 48
    assert skill["counts"]["scored"] == skill["overall"]["n"]
    assert set(skill["by_symbol"]) == {"BTC/USD", "ETH/USD"}
    gates = json.loads((out / "gates.json").read_text())
    assert (
        cli.main(
            ["--config", str(SHIPPED_CONFIG), "skill", "--journal", str(out / "journal.sqlite"), "--gates", "--json"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == gates
    summary = json.loads((out / "summary.json").read_text())
    with (out / "ablation.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["variant"] for r in rows] == ["all", *VARIANTS]
    assert int(rows[0]["trades"]) == summary["trades"]["total"]
    assert float(rows[0]["return_pct"]) == pytest.approx(100 * summary["period_return"], abs=1e-4)
    page = (out / "report.html").read_text()
    assert "no_kronos" in page and "Brier" in page


def test_forecasts_whose_horizon_bar_is_past_the_data_are_counted_unscorable() -> None:
    period = Period(datetime(2024, 12, 30, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))  # data ends 12-31 23:00
    run = run_backtest(settings(SYMBOLS), fixture_store(SYMBOLS), period, forecaster=ScriptedForecaster(wavy))
    # decisions at 21:00, 22:00, 23:00 on the 31st forecast bars opening at 00:00-02:00 on Jan 1: never seen
    assert run.skill["counts"] == {"scored": 2 * 45, "unscorable": 2 * 3}
    assert run.skill["overall"]["n"] == 90


# variant -> require a technical PASS in the equivalent real run (Kronos and sentiment always yes there)
EQUIVALENT = {"technical_alone": True, "every_hour": False}


@pytest.mark.parametrize("variant", sorted(EQUIVALENT))
def test_an_ablation_variant_equals_a_real_run_with_the_ignored_gates_saying_yes(variant: str) -> None:
    store = fixture_store(SYMBOLS)
    main = run_backtest(
        settings(SYMBOLS), store, PERIOD, forecaster=ScriptedForecaster(wavy), cache=CacheStore(":memory:"), ablate=True
    )
    ablated = next(r for r in main.ablation if r["variant"] == variant)
    # No news in these runs: sentiment is NO_DATA, which the shipped config counts as neutral, exactly
    # what the ablation's "sentiment ignored" says. Kronos "ignored" = every path far up.
    real = run_backtest(
        settings(SYMBOLS, engine={"require_technical_for_kronos_only": EQUIVALENT[variant]}),
        store,
        PERIOD,
        forecaster=ScriptedForecaster(lambda _s: 0.10),
        cache=CacheStore(":memory:"),
    )
    assert ablated == row(variant, build_summary(real))
    assert ablated["trades"] > 0
    assert next(r for r in main.ablation if r["variant"] == "all") == row("all", build_summary(main))


@pytest.mark.parametrize("command", ["backtest", "evaluate"])
def test_a_model_that_cannot_be_loaded_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    args = ["--config", str(SHIPPED_CONFIG), command, "--data", str(FIXTURE_BARS), "--from", "2024-12-20"]
    args += ["--to", "2024-12-21", "--symbols", "BTC", "--model", str(tmp_path), "--tokenizer", str(TINY_TOKENIZER)]
    args += ["--no-verify", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(args) == 3  # no model (kronos_bot.commands.failures.EXIT_MODEL)
    err = capsys.readouterr().err
    assert f"kronos-bot {command}: " in err and "config.json" in err and "Traceback" not in err
