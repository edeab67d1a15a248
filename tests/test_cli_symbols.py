"""Symbols are typed in any case and in the BTC, btc/usd, BTC/USD, BTCUSD forms, and mean the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kronos_bot import cli
from kronos_bot.domain import parse_symbol, symbol_argument
from tests.test_trader_commands import populate_journal


@pytest.mark.parametrize("typed", ["BTC", "btc", "btc/usd", "BTC/USD", "BTCUSD", "btcusd", "Btc-Usd", " btc "])
def test_every_form_of_a_symbol_is_base_slash_usd(typed: str) -> None:
    assert parse_symbol(typed) == "BTC/USD"


def test_a_coin_whose_name_ends_like_a_quote_keeps_it() -> None:
    assert parse_symbol("doge") == "DOGE/USD"
    assert parse_symbol("USDCUSD") == "USDC/USD"


@pytest.mark.parametrize("typed", ["", "/USD", "USD", "BTC/EUR", "ETH/BTC", "b!c", "BTC/USD/X", "a very long name"])
def test_anything_else_is_refused_with_the_forms_it_takes(typed: str) -> None:
    with pytest.raises(ValueError, match="BTC, btc/usd, BTC/USD"):
        parse_symbol(typed)
    with pytest.raises(argparse.ArgumentTypeError):
        symbol_argument(typed)


def test_decisions_profit_and_skill_match_a_lower_case_symbol(
    tmp_path: Path, fake_alpaca, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(populate_journal(tmp_path, fake_alpaca))
    capsys.readouterr()
    assert cli.main(["--config", config, "decisions", "--since", "2024-12-01", "--symbol", "sol"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if " SKIP " in line or " ENTER " in line]
    assert rows and all("SOL/USD" in row for row in rows)
    assert cli.main(["--config", config, "profit", "--symbol", "ethusd", "--json"]) == 0
    assert '"symbol": "ETH/USD"' in capsys.readouterr().out


def test_every_command_that_takes_a_symbol_parses_it_the_same_way() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["backtest", "--data", "d", "--symbols", "btc", "eth/usd", "SOLUSD"])
    assert args.symbols == ["BTC/USD", "ETH/USD", "SOL/USD"]
    assert parser.parse_args(["evaluate", "--data", "d", "--symbols", "Doge"]).symbols == ["DOGE/USD"]
    assert parser.parse_args(["forecast", "doge"]).symbol == "DOGE/USD"
    for command in ("decisions", "profit", "skill"):
        assert parser.parse_args([command, "--symbol", "btcusd"]).symbol == "BTC/USD"
