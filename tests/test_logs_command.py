"""`kronos-bot logs`: the trader's real JSON log lines, as journalctl -o cat prints them, as the decision table."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from kronos_bot.cli import main as kronos_bot
from kronos_bot.config import load_settings
from kronos_bot.trader.daemon import build_trader_parts
from kronos_bot.trader.decision_table import COLUMNS, LINE_LEGEND, ROW_LEGEND
from tests.trader_support import CYCLE_NOW, SYMBOLS, JsonLogs, ScriptedForecaster, load_market, write_settings

ENTRY_POINT = str(Path(sys.executable).parent / "kronos-bot")
TIER = [name for name, _ in COLUMNS].index("tier")
CUT_LINE = '{"event": "decision", "symbol": "BTC/USD", "action": "ENT'
NOTICE = "-- Boot 3f2a --"
TOO_DEEP = '{"event": ' + "[" * 100_000  # json.loads raises RecursionError, not a JSONDecodeError


class TraderLog:
    """The log of two real cycles: BTC enters at kronos_only, then is skipped with its position open."""

    def __init__(self, tmp_path: Path, fake) -> None:
        load_market(fake)
        self.config = write_settings(tmp_path, fake.base_url)
        now = [CYCLE_NOW]
        with JsonLogs() as captured:
            parts = build_trader_parts(
                load_settings(self.config),
                clock=lambda: now[0],
                forecaster_factory=lambda: ScriptedForecaster({"BTC/USD": 0.02}),
            )
            try:
                parts.cycle.run(trade=True)
                now[0] = CYCLE_NOW + timedelta(minutes=15)
                parts.cycle.run(trade=True)
            finally:
                parts.close()
        self.lines = captured.stream.getvalue().splitlines()
        self.events = captured.events

    def text(self, extra_middle: tuple[str, ...] = ()) -> str:
        half = len(self.lines) // 2
        return "\n".join([*self.lines[:half], *extra_middle, *self.lines[half:]]) + "\n"


@pytest.fixture
def trader_log(tmp_path: Path, fake_alpaca) -> TraderLog:
    return TraderLog(tmp_path, fake_alpaca)


def run_logs(monkeypatch, capsys, stdin_text: str, *args: str, config: Path) -> tuple[int, list[str], str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    capsys.readouterr()
    code = kronos_bot(["logs", "--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def decision_rows(out: list[str]) -> list[list[str]]:
    """The words of each decision row: date, time, symbol, action, tier, ... (the time cell is two words)."""
    return [line.split() for line in out[2:] if line.split()[3:4] in (["ENTER"], ["SKIP"])]


def test_real_trader_lines_become_the_table_under_a_legend(monkeypatch, capsys, trader_log: TraderLog) -> None:
    code, out, err = run_logs(monkeypatch, capsys, trader_log.text(), config=trader_log.config)
    assert code == 0, err
    assert out[0] == ROW_LEGEND + LINE_LEGEND
    assert out[0].count("markers:") == 1 and "FLAT*" in out[0] and "BEARISH!" in out[0]
    assert out[1].split() == [name for name, _ in COLUMNS]
    rows = decision_rows(out)
    assert [row[2] for row in rows] == list(SYMBOLS) * 2
    enter = next(row for row in rows if row[3] == "ENTER")
    assert enter[2] == "BTC/USD" and enter[TIER + 1] == "kronos_only" and "60.00" in enter and "UP*" in enter
    assert any(" -- position.opened " in line for line in out)
    assert sum(" -- cycle.start " in line for line in out) == 2


def test_skip_rows_show_no_tier_even_when_the_signal_had_one(monkeypatch, capsys, trader_log: TraderLog) -> None:
    second_btc = [e for e in trader_log.events if e["event"] == "decision" and e["symbol"] == "BTC/USD"][-1]
    assert second_btc["action"] == "SKIP" and second_btc["tier"] == "kronos_only"  # the log still says it
    _, out, _ = run_logs(monkeypatch, capsys, trader_log.text(), config=trader_log.config)
    skips = [row for row in decision_rows(out) if row[3] == "SKIP"]
    assert len(skips) == 2 * len(SYMBOLS) - 1
    assert all(row[TIER + 1] == "-" for row in skips)
    assert "position_open" in next(line for line in out if "BTC/USD" in line and "SKIP" in line)


def test_a_cut_line_and_a_journald_notice_in_the_middle_do_not_stop_the_stream(
    monkeypatch, capsys, trader_log: TraderLog
) -> None:
    text = trader_log.text(extra_middle=(CUT_LINE, NOTICE, "", TOO_DEEP, "{not json}"))
    code, out, err = run_logs(monkeypatch, capsys, text, config=trader_log.config)
    assert code == 0, err
    assert len(decision_rows(out)) == 2 * len(SYMBOLS)
    shown_as_text = [line.split("?? ", 1)[1] for line in out[2:] if " ?? " in line]
    assert shown_as_text[:2] == [CUT_LINE, NOTICE] and len(shown_as_text) == 4
    assert all(len(line) < 300 for line in out[2:] if " ?? " in line)


def test_decisions_only_shows_rows_and_no_other_lines(monkeypatch, capsys, trader_log: TraderLog) -> None:
    text = trader_log.text(extra_middle=(CUT_LINE,))
    _, out, _ = run_logs(monkeypatch, capsys, text, "--decisions-only", config=trader_log.config)
    assert out[0] == ROW_LEGEND
    assert len(out) == 2 + 2 * len(SYMBOLS) == 2 + len(decision_rows(out))


def test_symbol_keeps_that_symbols_rows_and_the_cycle_lines(monkeypatch, capsys, trader_log: TraderLog) -> None:
    _, out, _ = run_logs(monkeypatch, capsys, trader_log.text(), "--symbol", "ETH/USD", config=trader_log.config)
    assert [row[2] for row in decision_rows(out)] == ["ETH/USD", "ETH/USD"]
    assert run_logs(monkeypatch, capsys, trader_log.text(), "--symbol", "eth", config=trader_log.config)[1] == out
    assert not any(" -- position.opened " in line or " -- order." in line for line in out)  # BTC's
    assert sum(" -- cycle.end " in line for line in out) == 2


def test_a_file_argument_is_read_like_standard_input(monkeypatch, capsys, trader_log: TraderLog, tmp_path) -> None:
    log = tmp_path / "trader.log"
    log.write_bytes(trader_log.text().encode() + b"\xff\xfe cut \xe2\x82\n")
    _, from_stdin, _ = run_logs(monkeypatch, capsys, trader_log.text(), config=trader_log.config)
    code, from_file, _ = run_logs(monkeypatch, capsys, "", str(log), config=trader_log.config)
    assert code == 0 and from_file[:-1] == from_stdin and "cut" in from_file[-1]
    code, _, err = run_logs(monkeypatch, capsys, "", str(tmp_path / "missing.log"), config=trader_log.config)
    assert code == 2 and "kronos-bot logs: cannot read" in err and "Traceback" not in err


def test_follow_of_a_file_waits_for_lines_appended_to_it(monkeypatch, capsys, trader_log: TraderLog, tmp_path) -> None:
    """Like tail -f; a line caught half-written is held back until its newline arrives, never shown as text."""
    first, second = [line for line in trader_log.lines if '"decision"' in line][:2]
    log = tmp_path / "trader.log"
    log.write_text(first + "\n")
    appends = [second[:40], second[40:] + "\n"]

    def sleep(seconds: float) -> None:  # the trader writing while the command waits; then Ctrl-C
        if not appends:
            raise KeyboardInterrupt
        with log.open("a") as stream:
            stream.write(appends.pop(0))

    monkeypatch.setattr(time, "sleep", sleep)
    capsys.readouterr()
    assert kronos_bot(["logs", "--follow", str(log), "--config", str(trader_log.config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [row[2] for row in decision_rows(out)] == ["BTC/USD", "ETH/USD"] and len(out) == 4


def test_follow_ends_quietly_on_ctrl_c(monkeypatch, capsys, trader_log: TraderLog) -> None:
    lines = iter(trader_log.text().splitlines(keepends=True)[:5])

    class Terminal(io.StringIO):
        def readline(self, size: int | None = -1) -> str:
            line = next(lines, None)
            if line is None:
                raise KeyboardInterrupt
            return line

    monkeypatch.setattr(sys, "stdin", Terminal())
    assert kronos_bot(["logs", "--follow", "--config", str(trader_log.config)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("time") and "Traceback" not in err


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys, trader_log: TraderLog, tmp_path) -> None:
    """`kronos-bot logs | head -3`: the reader goes away; the command returns 0 without a traceback."""

    class ClosedAfterThreeLines(io.StringIO):
        def __init__(self, sink: Path) -> None:
            super().__init__()
            self.sink = open(sink, "w")  # noqa: SIM115 - closed below

        def write(self, text: str) -> int:
            if self.getvalue().count("\n") == 3:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

        def fileno(self) -> int:
            return self.sink.fileno()

    stdout = ClosedAfterThreeLines(tmp_path / "devnull")
    monkeypatch.setattr(sys, "stdin", io.StringIO(trader_log.text()))
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert kronos_bot(["logs", "--follow", "--config", str(trader_log.config)]) == 0
    finally:
        stdout.sink.close()
    assert len(stdout.getvalue().splitlines()) == 3 and "Traceback" not in capsys.readouterr().err


def test_no_pipe_and_no_file_says_how_to_use_it(monkeypatch, capsys, tmp_path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    assert kronos_bot(["logs", "--config", str(write_settings(tmp_path, None))]) == 2
    assert "journalctl -u kronos-trader -o cat -f | kronos-bot logs" in capsys.readouterr().err


def test_help_has_a_one_line_example(capsys) -> None:
    with pytest.raises(SystemExit):
        kronos_bot(["logs", "--help"])
    help_text = capsys.readouterr().out
    assert "example: journalctl -u kronos-trader -o cat -f | kronos-bot logs --follow\n" in help_text


def test_the_readme_pipe_works_with_the_installed_entry_point(trader_log: TraderLog) -> None:
    """`journalctl ... -f | kronos-bot logs --follow`: each row appears as its line arrives; EOF ends it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    proc = subprocess.Popen(
        [ENTRY_POINT, "logs", "--follow", "--config", str(trader_log.config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    timer = threading.Timer(30, proc.kill)
    timer.start()
    try:
        first = next(line for line in trader_log.lines if '"decision"' in line)
        proc.stdin.write(first.encode() + b"\n")
        proc.stdin.flush()
        seen = [proc.stdout.readline().decode() for _ in range(3)]  # legend, header, then the row, before EOF
        assert seen[0].startswith("markers:") and "BTC/USD" in seen[2]
        proc.stdin.write(b"\xff garbled \xe2\n" + trader_log.text().encode())
        proc.stdin.close()
        rest = proc.stdout.read().decode()
        err = proc.stderr.read().decode()
        assert proc.wait() == 0, err
    finally:
        timer.cancel()
    assert "Traceback" not in err
    assert " ?? " in rest and rest.count(" SKIP ") == 2 * len(SYMBOLS) - 1
