"""Every command in the failure modes it can meet: one message naming the cause, the documented exit code,
never a traceback (unless --log-level DEBUG asks for one). See kronos_bot.commands.failures."""

from __future__ import annotations

import importlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kronos_bot import cli
from kronos_bot.commands import failures
from kronos_bot.commands.failures import (
    EXIT_BROKER,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_JOURNAL,
    EXIT_MARKET_DATA,
    EXIT_MODEL,
    EXIT_USAGE,
    KNOWN_FAILURES,
    describe_failure,
)
from tests.conftest import FIXTURES, SHIPPED_CONFIG
from tests.trader_support import write_settings

BARS = FIXTURES / "bars"
TINY = FIXTURES / "kronos_tiny"
TINY_MODEL = ["--model", str(TINY / "model"), "--tokenizer", str(TINY / "tokenizer"), "--no-verify"]
CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens there: connection refused at once
PERIOD = ["--from", "2024-12-20", "--to", "2024-12-21", "--symbols", "btc"]
JOURNAL_COMMANDS = [("run",), ("once",), ("status",), ("decisions",), ("profit",), ("skill",)]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """(exit code, stderr) of `kronos-bot ARGS` in process; fails the test on any traceback."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err, captured.out + captured.err
    return code, captured.err


def last_line(err: str) -> str:
    lines = err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture
def offline_config(tmp_path: Path) -> Path:
    """The shipped config with Alpaca's data and trading URLs on a closed port and a tmp journal."""
    return write_settings(tmp_path, CLOSED_PORT)


def journal_at(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text())["journal"]["path"])


# ----- the model -----


@pytest.mark.parametrize(
    "command",
    [
        ("backtest", "--data", str(BARS), *PERIOD),
        ("evaluate", "--data", str(BARS), *PERIOD),
        ("forecast", "--csv", str(TINY / "bars.csv")),
        ("download-model",),
    ],
    ids=lambda c: c[0],
)
def test_a_model_that_is_neither_cached_nor_reachable_exits_3_with_the_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    extra = ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")] if command[0] != "forecast" else []
    if command[0] == "download-model":
        extra = ["--cache-dir", str(tmp_path / "hub")]
    code, err = run(capsys, "--config", str(SHIPPED_CONFIG), *command, *extra)
    assert code == EXIT_MODEL
    message = last_line(err)
    assert message.startswith(f"kronos-bot {command[0]}: cannot load the model: ")
    assert "offline" in message and "download-model" in message


def test_a_missing_local_model_folder_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    code, err = run(
        capsys, "--config", str(SHIPPED_CONFIG), "backtest", "--data", str(BARS), *PERIOD, "--model", str(missing),
        "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert code == EXIT_MODEL
    assert str(missing) in last_line(err) and "local folder" in last_line(err)


def test_the_forecaster_service_without_its_model_exits_3(tmp_path: Path) -> None:
    """The long-running service, in the one failure that ends it quickly: the model cannot be loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    command = [sys.executable, "-m", "kronos_bot", "--config", str(SHIPPED_CONFIG), "forecaster"]
    where = ["--socket", str(tmp_path / "f.sock"), "--model", str(tmp_path / "absent"), "--no-verify"]
    result = subprocess.run(
        [*command, *where],
        capture_output=True,
        text=True,
        env={**env, "HF_HUB_OFFLINE": "1"},
        timeout=60,
    )
    assert result.returncode == EXIT_MODEL, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert last_line(result.stderr).startswith("kronos-bot forecaster: cannot load the model: ")
    assert str(tmp_path / "absent") in last_line(result.stderr)


# ----- market data -----


def test_backtest_from_alpaca_offline_exits_4(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, offline_config: Path
) -> None:
    code, err = run(
        capsys, "--config", str(offline_config), "backtest", "--data", "alpaca", *PERIOD, *TINY_MODEL,
        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == EXIT_MARKET_DATA
    message = last_line(err)
    assert message.startswith("kronos-bot backtest: market data unavailable: connection refused")
    assert "--data DIR" in message


def test_a_live_forecast_offline_exits_4(capsys: pytest.CaptureFixture[str], offline_config: Path) -> None:
    code, err = run(capsys, "--config", str(offline_config), "forecast", "btc", *TINY_MODEL)
    assert code == EXIT_MARKET_DATA
    assert last_line(err).startswith("kronos-bot forecast: market data unavailable: no usable bars for BTC/USD")


# ----- the journal -----


def corrupt(journal: Path) -> None:
    journal.write_bytes(b"this is not a SQLite file, just some text that is long enough " * 4)


def newer_schema(journal: Path) -> None:
    with sqlite3.connect(journal) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (999, '2030-01-01T00:00:00Z')")
    conn.close()


@pytest.mark.parametrize("command", JOURNAL_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("spoil", "cause", "fix"),
    [(corrupt, "file is not a database", "move it aside"), (newer_schema, "is newer than", "upgrade")],
    ids=["corrupt", "newer-schema"],
)
def test_a_journal_sqlite_refuses_exits_6(
    capsys: pytest.CaptureFixture[str],
    offline_config: Path,
    command: tuple[str, ...],
    spoil: Callable[[Path], None],
    cause: str,
    fix: str,
) -> None:
    journal = journal_at(offline_config)
    spoil(journal)
    code, err = run(capsys, "--config", str(offline_config), *command)
    assert code == EXIT_JOURNAL
    message = last_line(err)
    assert message.startswith(f"kronos-bot {command[0]}: journal {journal}")
    assert cause in message and fix in message


@pytest.mark.parametrize("command", [("run",), ("once",), ("config", "check")], ids=lambda c: c[0])
def test_a_journal_path_that_cannot_be_created_is_a_config_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "afile").write_text("x")
    config = write_settings(tmp_path, CLOSED_PORT, journal={"path": str(tmp_path / "afile" / "journal.sqlite")})
    code, err = run(capsys, "--config", str(config), *command)
    assert code == EXIT_USAGE
    assert "journal.path: its directory" in err and "refusing to start" in err


def test_a_locked_or_read_only_journal_is_named_with_its_fix() -> None:
    locked = failures.JournalUnusable("var/j.sqlite", sqlite3.OperationalError("database is locked"))
    readonly = failures.JournalUnusable(
        "var/j.sqlite", sqlite3.OperationalError("attempt to write a readonly database")
    )
    for exc, fix in ((locked, "another process holds it"), (readonly, "can write the file")):
        failure = describe_failure(exc, "status")
        assert failure is not None and failure.code == EXIT_JOURNAL
        assert failure.message.startswith("kronos-bot status: journal var/j.sqlite: ") and fix in failure.message


# ----- the broker -----


def test_live_trading_without_its_confirmation_is_refused_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "PKTESTKEYTESTKEY")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "testsecrettestsecret")
    config = write_settings(tmp_path, CLOSED_PORT, broker={"live": True})
    for command in ("run", "once"):
        code, err = run(capsys, "--config", str(config), command)
        assert code == EXIT_USAGE
        assert last_line(err).startswith(f"kronos-bot {command}: live trading refused: ")
        assert "KRONOS_BOT_LIVE_TRADING" in err


def known_failures() -> list[tuple[BaseException, int, str]]:
    """One instance of each failure class a command can meet, the exit code and a word of its message."""
    from kronos_bot.broker.base import BrokerAuthError, BrokerError, BrokerUnavailable
    from kronos_bot.forecast_types import ForecasterUnavailable
    from kronos_bot.kronos.hub import ModelLoadError
    from kronos_bot.market.alpaca_http import MarketDataError

    return [
        (BrokerAuthError("HTTP 401: unauthorized", status_code=401), EXIT_BROKER, "ALPACA_API_KEY"),
        (BrokerUnavailable("connection refused after 3 attempts"), EXIT_BROKER, "the broker is unavailable"),
        (BrokerError("HTTP 422: bad request"), EXIT_BROKER, "the broker refused"),
        (ForecasterUnavailable("unix:/run/kronos.sock: no such file"), EXIT_MODEL, "kronos-bot forecaster"),
        (ModelLoadError("hash mismatch"), EXIT_MODEL, "download-model"),
        (MarketDataError("HTTP 403: forbidden", status=403), EXIT_MARKET_DATA, "ALPACA_SECRET_KEY"),
        (failures.InputError("--data x: no such folder"), EXIT_USAGE, "--data x"),
        (sqlite3.DatabaseError("database disk image is malformed"), EXIT_JOURNAL, "damaged"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
    ]


@pytest.mark.parametrize("case", range(len(known_failures())))
@pytest.mark.parametrize("command", ["status", "once", "backtest"])
def test_each_known_failure_raised_by_a_command_is_one_line_and_its_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str, case: int
) -> None:
    """The broker, forecaster and KeyboardInterrupt failures, which the commands' own paths degrade around."""
    exc, code, word = known_failures()[case]
    module = importlib.import_module(cli.COMMAND_MODULES[command])

    def failing_main(*_args: object) -> int:
        raise exc

    monkeypatch.setattr(module, "main", failing_main)
    args = ["--data", str(BARS)] if command == "backtest" else []
    got, err = run(capsys, "--config", str(write_settings(tmp_path, CLOSED_PORT)), command, *args)
    assert got == code
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"kronos-bot {command}: ") and word in err


def test_an_unexpected_exception_is_a_bug_and_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = importlib.import_module(cli.COMMAND_MODULES["status"])

    def buggy(*_args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(module, "main", buggy)
    with pytest.raises(ZeroDivisionError):
        cli.main(["--config", str(write_settings(tmp_path, CLOSED_PORT)), "status"])


def test_debug_shows_the_traceback_before_the_same_message_and_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    code = cli.main(
        ["--config", str(SHIPPED_CONFIG), "--log-level", "DEBUG", "backtest", "--data", str(BARS), *PERIOD, *out]
    )
    err = capsys.readouterr().err
    assert code == EXIT_MODEL
    assert "Traceback (most recent call last)" in err and "ModelLoadError" in err
    assert last_line(err).startswith("kronos-bot backtest: cannot load the model: ")


def test_every_known_failure_names_a_class_that_exists() -> None:
    for entry in KNOWN_FAILURES:
        cls = getattr(importlib.import_module(entry.module), entry.name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), entry


# ----- arguments, input files, configuration -----


@pytest.mark.parametrize(
    ("command", "cause"),
    [
        (("backtest", "--data", "no-such-dir"), "no-such-dir"),
        (("evaluate", "--data", "no-such-dir"), "no-such-dir"),
        (("backtest", "--data", str(BARS), "--from", "2024-13-01"), "2024-13-01"),
        (("evaluate", "--data", str(BARS), "--to", "yesterday"), "yesterday"),
        (("forecast", "--csv", "missing.csv", *TINY_MODEL), "missing.csv"),
        (("forecast", "--csv", str(TINY / "bars.csv"), "--context", "0", *TINY_MODEL), "--context"),
        (("skill", "--journal", "missing.sqlite"), "missing.sqlite"),
        (("forecaster", "--socket", "f.sock", "--port", "8765"), "not both"),
    ],
    ids=lambda c: c[0] if isinstance(c, tuple) else "",
)
def test_a_bad_argument_or_input_file_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], offline_config: Path, command: tuple[str, ...], cause: str
) -> None:
    code, err = run(capsys, "--config", str(offline_config), *command)
    assert code == EXIT_USAGE
    assert last_line(err).startswith(f"kronos-bot {command[0]}: ") and cause in last_line(err)


@pytest.mark.parametrize("command", ["decisions", "profit", "skill", "backtest", "forecast"])
def test_a_symbol_in_no_known_form_is_an_argparse_error(capsys: pytest.CaptureFixture[str], command: str) -> None:
    option = {"decisions": ["--symbol"], "profit": ["--symbol"], "skill": ["--symbol"], "forecast": []}
    args = option.get(command, ["--data", str(BARS), "--symbols"])
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, *args, "btc/eur"])
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "only USD pairs" in err and "BTC/USD" in err and "Traceback" not in err


def _needs_config(command: str) -> bool:
    import importlib

    return bool(getattr(importlib.import_module(cli.COMMAND_MODULES[command]), "NEEDS_CONFIG", True))


def test_logs_reads_its_input_whatever_the_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    bad = tmp_path / "bad.yaml"
    bad.write_text("symbols: [NOPE]\n")
    monkeypatch.setattr("sys.stdin", io.StringIO('{"event": "cycle.start", "ts": "2025-01-01T00:00:30Z"}\n'))
    code, err = run(capsys, "--config", str(bad), "logs")
    assert code == 0 and "Traceback" not in err


@pytest.mark.parametrize("command", [c for c in cli.COMMAND_MODULES if _needs_config(c)])
def test_a_bad_config_stops_every_command_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("symbols: [NOPE]\n")
    required = {
        "backtest": ["--data", str(BARS)],
        "evaluate": ["--data", str(BARS)],
        "optimize": ["--data", str(BARS)],
        "forecast": ["btc"],
        "config": ["check"],
    }
    code, err = run(capsys, "--config", str(bad), command, *required.get(command, []))
    assert code == EXIT_USAGE
    assert str(bad) in err and "symbols" in err and "refusing to start" in err


def test_notify_test_without_a_url_exits_1_naming_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--config", str(SHIPPED_CONFIG), "notify-test")
    assert code == EXIT_FAILED
    assert "KRONOS_BOT_NOTIFY_URLS" in err
