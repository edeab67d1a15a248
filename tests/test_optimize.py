"""`kronos-bot optimize` on the fixture bars with the tiny checkpoint: outputs, walk-forward, workers, bad input.

One warm forecast cache is built once for the module (the first run computes the forecasts); every
other run reads it, so the trials are what these tests spend their time on.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import optuna
import pytest
import yaml
from markupsafe import escape

from kronos_bot import cli
from kronos_bot.backtest.optimize import overlay
from kronos_bot.backtest.optimize.folds import hours_needed, walk_forward
from kronos_bot.backtest.optimize.space import SpaceError, parse_space
from kronos_bot.backtest.period import Period
from kronos_bot.config import Settings
from tests.backtest_support import FIXTURE_BARS, TINY_BTC_ETH_ARGS
from tests.conftest import REPO_ROOT, SHIPPED_CONFIG

SPACE = REPO_ROOT / "config" / "optimize.yaml"


def command(out: Path, cache: Path, *extra: str, start: str = "2024-12-18", end: str = "2024-12-31") -> list[str]:
    return [
        "--config",
        str(SHIPPED_CONFIG),
        "optimize",
        "--data",
        str(FIXTURE_BARS),
        "--from",
        start,
        "--to",
        end,
        *TINY_BTC_ETH_ARGS,
        "--samples",
        "4",
        "--seed",
        "3",
        "--folds",
        "2",
        "--min-trades",
        "2",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def run(args: list[str]) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(args)
    return code, printed.getvalue()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """(out, warm cache, stdout) of one 6-trial study over the default space."""
    root = tmp_path_factory.mktemp("optimize")
    out, cache = root / "out", root / "cache"
    code, printed = run(command(out, cache, "--trials", "6", "--space", str(SPACE), "--study", "first"))
    assert code == 0
    yield out, cache, printed


def write_space(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ----- the command on the fixture data -----


def test_the_command_writes_best_yaml_trials_csv_and_the_report(first_run: tuple[Path, Path, str]) -> None:
    out, _cache, printed = first_run
    for name in ("best.yaml", "trials.csv", "report.html", "summary.json", "study.db", "equity.png"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".optimize-")]  # the staging folder is gone
    with (out / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert {"state", "value", "in_sample_objective", "trades", "gates.kronos.min_confidence"} <= set(rows[0])
    assert "6 trials in" in printed and "trials/s" in printed
    assert "fold  part" in printed and printed.count("out-of-sample") >= 2
    assert f"report: {out / 'report.html'}" in printed


def test_best_yaml_holds_only_changed_space_keys_and_validates_merged_onto_the_shipped_config(
    first_run: tuple[Path, Path, str],
) -> None:
    out = first_run[0]
    best = yaml.safe_load((out / "best.yaml").read_text())
    space_keys = set(yaml.safe_load(SPACE.read_text()))
    flat = {
        f"{section}.{key}" if not isinstance(value, dict) else f"{section}.{key}.{sub}"
        for section, keys in best.items()
        for key, value in keys.items()
        for sub in (value if isinstance(value, dict) else [None])
    }
    assert flat and flat <= space_keys
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    merged = Settings.model_validate(overlay.merge(shipped, best))
    summary = json.loads((out / "summary.json").read_text())
    for path, value in summary["best"]["params"].items():
        assert overlay.value_at(merged, path) == value


def test_config_check_accepts_best_yaml_as_a_second_config(
    first_run: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = first_run[0]
    code = cli.main(["config", "check", "--config", str(SHIPPED_CONFIG), "--config", str(out / "best.yaml")])
    assert code == 0, capsys.readouterr().err


def test_the_report_shows_in_sample_vs_out_of_sample_beside_defaults_and_buy_and_hold(
    first_run: tuple[Path, Path, str],
) -> None:
    page = (first_run[0] / "report.html").read_text()
    assert "In-sample vs out-of-sample, per fold" in page
    assert page.count('<td class="text">out-of-sample</td>') == 2 and page.count(">in-sample</td>") == 2
    assert "defaults sharpe" in page and "buy &amp; hold %" in page
    assert "Optimisation history" in page and "Parameter importances" in page
    assert page.count("data:image/png;base64,") >= 2 and "<script" not in page
    summary = json.loads((first_run[0] / "summary.json").read_text())
    assert summary["verdicts"] and all(str(escape(v)) in page for v in summary["verdicts"])


def test_a_second_run_reads_the_warm_cache_and_a_joined_study_adds_up(
    first_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """The same study joined again with --trials 8 runs the 2 missing trials, from cached forecasts."""
    out, cache, _ = first_run
    storage = f"sqlite:///{out / 'study.db'}"
    code, printed = run(
        command(
            tmp_path / "out", cache, "--trials", "8", "--storage", storage, "--study", "first", "--space", str(SPACE)
        )
    )
    assert code == 0 and "2 trials in" in printed
    study = optuna.load_study(study_name="first", storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(8))


def test_two_worker_processes_share_one_sqlite_study(first_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    cache = first_run[1]
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    args = command(tmp_path / "out", cache, "--trials", "7", "--jobs", "2", "--storage", storage, "--study", "pair")
    code, printed = run([*args, "--space", str(SPACE)])
    assert code == 0 and "7 trials in" in printed
    trials = optuna.load_study(study_name="pair", storage=storage).trials
    numbers = [t.number for t in trials]
    assert len(numbers) == 7 and sorted(numbers) == list(range(7))  # adds up, no number twice
    assert len({t._trial_id for t in trials}) == 7


def test_an_invalid_sampled_combination_is_pruned_not_crashed(
    first_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        {
            "engine.tiers.triple_confirmed": {"low": 0.3, "high": 1.0, "step": 0.1},
            "engine.tiers.kronos_only": {"low": 0.3, "high": 1.0, "step": 0.1},
        },
    )
    code, _ = run(
        command(tmp_path / "out", first_run[1], "--trials", "8", "--space", str(space), "--sampler-seed", "1")
    )
    assert code == 0
    with (tmp_path / "out" / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert len(rows) == 8 and pruned and rows != pruned
    assert all("must not exceed triple_confirmed" in r["invalid"] for r in pruned)
    assert all(float(r["engine.tiers.kronos_only"]) > float(r["engine.tiers.triple_confirmed"]) for r in pruned)


# ----- bad input: one message, exit 2, nothing written -----


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("space", "said"),
    [
        ({"gates.kronos.min_confidenc": {"low": 0.5, "high": 0.8}}, "unknown key path: gates.kronos has no setting"),
        ({"risk.cooldown_minutes": {"low": 30, "high": 30}}, "empty range (low = high = 30)"),
        ({"exits.trail_percent": {"low": 4.0, "high": 1.0}}, "inverted range (low 4.0 > high 1.0)"),
        ({"risk.cooldown_minutes": {"low": 0.5, "high": 30}}, "whole-number setting"),
        ({"gates.kronos.min_confidence": {"low": 0.5, "high": 1.5}}, "less than or equal to 1"),
        ({"gates.kronos.samples": {"low": 4, "high": 8}}, "gates.kronos.samples changes the forecasts"),
    ],
)
def test_a_bad_space_file_is_one_clear_message(
    space: dict, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_space(tmp_path / "space.yaml", space)
    err = refused(command(tmp_path / "out", tmp_path / "cache", "--space", str(file)), capsys)
    assert said in err and str(file) in err and next(iter(space)) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_period_too_short_for_the_folds_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = command(tmp_path / "out", tmp_path / "cache", "--space", str(SPACE), start="2024-12-20", end="2024-12-21")
    err = refused(args, capsys)
    assert "too short for 2 fold(s)" in err and f"at least {hours_needed(2)} h" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("url", ["nosuchdialect://somewhere/db", "sqlite:////nonexistent-dir/sub/study.db"])
def test_a_storage_that_does_not_connect_is_refused(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(command(tmp_path / "out", tmp_path / "cache", "--space", str(SPACE), "--storage", url), capsys)
    assert "cannot open the study storage" in err and "fix:" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_the_storage_message_hides_the_password() -> None:
    from kronos_bot.backtest.optimize.study import StorageError, open_storage

    with pytest.raises(StorageError) as raised:
        open_storage("nosuchdialect://user:hunter2@host/db")
    assert "hunter2" not in str(raised.value)


# ----- the parts -----


def test_the_space_lists_every_problem_at_once() -> None:
    with pytest.raises(SpaceError) as raised:
        parse_space({"gates": {}, "journal.path": {"low": 1, "high": 2}, "risk.nope": {"low": 1, "high": 2}}, "s.yaml")
    text = str(raised.value)
    assert "gates: is a section" in text and "journal.path: cannot be searched" in text and "risk.nope" in text
    space = parse_space(
        {
            "engine.sentiment_no_data": {"choices": ["neutral", "block"]},
            "risk.cooldown_minutes": {"low": 0, "high": 60},
        },
        "s.yaml",
    )
    assert space.paths == ["engine.sentiment_no_data", "risk.cooldown_minutes"]


def test_walk_forward_folds_are_consecutive_in_sample_then_out_of_sample() -> None:
    period = Period(datetime(2024, 12, 1, tzinfo=UTC), datetime(2024, 12, 11, tzinfo=UTC))  # 240 h
    folds = walk_forward(period, 3)
    assert folds[0].start == period.start and folds[-1].end == period.end
    for a, b in itertools.pairwise(folds):
        assert a.end == b.start
    for f in folds:
        assert f.in_sample.end == f.out_of_sample.start and f.in_sample.hours > f.out_of_sample.hours
    with pytest.raises(ValueError, match="too short"):
        walk_forward(period, 8)


def test_overlay_keeps_only_changed_keys_and_refuses_what_the_daemon_would() -> None:
    base = Settings()
    assert overlay.changed(base, {"risk.cooldown_minutes": 60, "exits.trail_percent": 3.0}) == {
        "exits": {"trail_percent": 3.0}
    }
    with pytest.raises(overlay.InvalidCombination, match="triple_confirmed"):
        overlay.apply(base, {"engine.tiers.kronos_only": 0.9, "engine.tiers.triple_confirmed": 0.5})
    assert overlay.apply(base, {"gates.technical.rsi_min": 30.0}).gates.technical.rsi_min == 30.0


def test_the_trial_side_never_imports_torch() -> None:
    """A worker (and a trial) runs on cached forecasts only: its modules import without torch."""
    probe = (
        "import sys, kronos_bot.backtest.optimize.workers, kronos_bot.backtest.optimize.results, "
        "kronos_bot.commands.optimize; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_too_few_trades_is_penalized_and_said(first_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    args = command(tmp_path / "out", first_run[1], "--trials", "3", "--space", str(SPACE))
    code, printed = run([*args, "--min-trades", "100000"])
    assert code == 0 and "no trial reached --min-trades 100000" in printed
    with (tmp_path / "out" / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert all(float(r["value"]) <= -1000 - (100000 - int(r["trades"])) + 1e-9 for r in rows)
