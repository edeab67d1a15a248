"""Every command's --help ends with a one-line example, and its arguments are named alike everywhere."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from kronos_bot import cli


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each registered command's parser, and nested ones (`config check`) under their full name."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    full = f"{prefix} {name}".strip()
                    found[full] = sub
                    walk(full, sub)

    walk("", cli.build_parser())
    return found


def shown_metavars(parser: argparse.ArgumentParser) -> dict[str, str]:
    """option or positional -> the metavar --help shows for it (options with choices show the choices)."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if action.nargs == 0 or action.help == argparse.SUPPRESS or action.choices is not None:
            continue
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction):
            continue
        metavar = action.metavar if action.metavar is not None else action.dest.upper()
        if action.option_strings:
            out[max(action.option_strings, key=len)] = str(metavar)
        else:
            out[action.dest] = str(metavar)
    return out


def test_every_command_is_walked() -> None:
    assert set(cli.COMMAND_MODULES) <= set(command_parsers())
    assert "config check" in command_parsers()


@pytest.mark.parametrize("command", sorted(command_parsers()))
def test_help_ends_with_a_one_line_example(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command.split(), "--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    examples = [line for line in lines if line.startswith("example: ")]
    assert len(examples) == 1, f"{command} --help has no 'example: ...' line"
    assert "kronos-bot " in examples[0]


@pytest.mark.parametrize("command", sorted(command_parsers()))
def test_no_one_letter_metavars(command: str) -> None:
    short = {option: m for option, m in shown_metavars(command_parsers()[command]).items() if len(m) < 2}
    assert short == {}, f"{command}: one-letter metavars {short}"


def test_metavars_are_upper_case_nouns_and_the_same_option_is_named_alike_everywhere() -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for command, parser in command_parsers().items():
        for option, metavar in shown_metavars(parser).items():
            noun = metavar.split("|")[0]  # `DIR|alpaca`: a literal alternative may follow the noun
            assert noun == noun.upper(), f"{command} {option} {metavar}"
            seen[option].add(metavar)
    assert {option: names for option, names in seen.items() if len(names) > 1} == {}
