"""Layered configuration: `--config base.yaml --config overlay.yaml`, later files overriding key by key.

The optimiser writes `best.yaml` with only the keys it changed, to be merged onto `config/bot.yaml`; these
tests pin the merge rules, that the merged result (not each file) is what gets validated, that every error
names the file to fix, and that the order of the files on the command line is the order of the merge.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kronos_bot import cli
from kronos_bot.config import (
    ConfigError,
    check_journal_path,
    load_settings,
    merge_layers,
    resolve_config_path,
    resolve_config_paths,
)
from tests.conftest import SHIPPED_CONFIG


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `kronos-bot ARGS` in process; fails the test on any traceback."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err, captured.out + captured.err
    return code, captured.out, captured.err


def printed_config(out: str) -> dict[str, Any]:
    data = yaml.safe_load(out)
    assert isinstance(data, dict)
    return data


# ----- the merge rules -----


def test_nested_mappings_merge_key_by_key() -> None:
    base = {"gates": {"kronos": {"min_confidence": 0.55, "samples": 32}, "technical": {"rsi_min": 40}}}
    overlay = {"gates": {"kronos": {"min_confidence": 0.7}}}
    assert merge_layers([base, overlay]) == {
        "gates": {"kronos": {"min_confidence": 0.7, "samples": 32}, "technical": {"rsi_min": 40}}
    }


def test_lists_and_scalars_are_replaced_not_merged() -> None:
    base = {"symbols": ["BTC/USD", "ETH/USD", "SOL/USD"], "gates": {"kronos": {"seed": 7}}}
    overlay = {"symbols": ["DOGE/USD"], "gates": {"kronos": {"seed": None}}}
    assert merge_layers([base, overlay]) == {"symbols": ["DOGE/USD"], "gates": {"kronos": {"seed": None}}}


def test_a_key_only_in_the_overlay_is_added_and_the_inputs_are_left_alone() -> None:
    base = {"risk": {"max_open_positions": 3}}
    overlay = {"risk": {"cooldown_minutes": 30}, "exits": {"trail_percent": 1.5}}
    merged = merge_layers([base, overlay])
    assert merged == {"risk": {"max_open_positions": 3, "cooldown_minutes": 30}, "exits": {"trail_percent": 1.5}}
    merged["risk"]["max_open_positions"] = 99
    merged["exits"]["trail_percent"] = 9.0
    assert base == {"risk": {"max_open_positions": 3}}
    assert overlay == {"risk": {"cooldown_minutes": 30}, "exits": {"trail_percent": 1.5}}


def test_a_mapping_replaces_a_scalar_and_a_scalar_a_mapping() -> None:
    assert merge_layers([{"a": 1}, {"a": {"b": 2}}]) == {"a": {"b": 2}}
    assert merge_layers([{"a": {"b": 2}}, {"a": 1}]) == {"a": 1}
    assert merge_layers([{"a": {"b": 2}}, {"a": {}}]) == {"a": {"b": 2}}  # an empty mapping changes nothing


def test_top_level_sections_match_case_insensitively_like_the_settings_model(tmp_path: Path) -> None:
    overlay = write(tmp_path, "overlay.yaml", {"Risk": {"cooldown_minutes": 5}})
    settings = load_settings([SHIPPED_CONFIG, overlay])
    assert settings.risk.cooldown_minutes == 5
    assert settings.risk.max_open_positions == load_settings(SHIPPED_CONFIG).risk.max_open_positions


# ----- loading several files -----


def test_a_partial_overlay_is_merged_onto_the_base_and_validated(tmp_path: Path) -> None:
    overlay = write(tmp_path, "best.yaml", {"gates": {"kronos": {"min_confidence": 0.7}}, "symbols": ["BTC/USD"]})
    base = load_settings(SHIPPED_CONFIG)
    settings = load_settings([SHIPPED_CONFIG, overlay])
    assert settings.gates.kronos.min_confidence == 0.7
    assert settings.symbols == ["BTC/USD"]
    assert settings.gates.kronos.threshold_percent == base.gates.kronos.threshold_percent
    assert settings.config_files == (SHIPPED_CONFIG, overlay)
    assert load_settings(SHIPPED_CONFIG).config_files == (SHIPPED_CONFIG,)


def test_the_fingerprint_is_that_of_the_merged_settings_not_of_the_files(tmp_path: Path) -> None:
    overlay = write(tmp_path, "best.yaml", {"exits": {"trail_percent": 1.5}})
    merged = merge_layers([yaml.safe_load(SHIPPED_CONFIG.read_text()), yaml.safe_load(overlay.read_text())])
    as_one_file = write(tmp_path, "one.yaml", merged)
    layered = load_settings([SHIPPED_CONFIG, overlay])
    assert layered.fingerprint() == load_settings(as_one_file).fingerprint()
    assert layered.fingerprint() != load_settings(SHIPPED_CONFIG).fingerprint()


def test_an_overlay_that_breaks_a_rule_is_refused_naming_the_overlay_and_the_key(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", {"engine": {"tiers": {"triple_confirmed": 0.7, "kronos_only": 0.5}}})
    overlay = write(tmp_path, "best.yaml", {"engine": {"tiers": {"kronos_only": 0.9}}})
    with pytest.raises(ConfigError) as err:
        load_settings([base, overlay])
    lines = str(err.value).splitlines()
    assert lines[0] == f"invalid configuration ({base} + {overlay}):"
    assert lines[1].startswith(f"  {overlay}: engine.tiers.kronos_only: ")
    assert "must not exceed triple_confirmed" in lines[1]


def test_an_overlay_lowering_the_partner_key_is_named_too(tmp_path: Path) -> None:
    """The check reports kronos_only (set by the base), but the overlay's triple_confirmed broke it."""
    overlay = write(tmp_path, "best.yaml", {"engine": {"tiers": {"triple_confirmed": 0.5}}})
    with pytest.raises(ConfigError) as err:
        load_settings([SHIPPED_CONFIG, overlay])
    (line,) = [line for line in str(err.value).splitlines() if "engine.tiers.kronos_only" in line]
    assert line.startswith(f"  {SHIPPED_CONFIG} + {overlay}: engine.tiers.kronos_only: ")


def test_a_bad_value_names_the_file_that_set_it_last(tmp_path: Path) -> None:
    first = write(tmp_path, "first.yaml", {"gates": {"kronos": {"min_confidence": 7}}})
    fixed = write(tmp_path, "fixed.yaml", {"gates": {"kronos": {"min_confidence": 0.6}}})
    broken = write(tmp_path, "broken.yaml", {"gates": {"kronos": {"min_confidence": 8}}})
    assert load_settings([SHIPPED_CONFIG, first, fixed]).gates.kronos.min_confidence == 0.6
    with pytest.raises(ConfigError) as err:
        load_settings([SHIPPED_CONFIG, first, fixed, broken])
    assert f"  {broken}: gates.kronos.min_confidence: " in str(err.value)
    assert f"{first}: gates" not in str(err.value)


def test_an_unknown_key_in_an_overlay_names_the_overlay(tmp_path: Path) -> None:
    overlay = write(tmp_path, "best.yaml", {"risk": {"max_open_positon": 2}})
    with pytest.raises(ConfigError) as err:
        load_settings([SHIPPED_CONFIG, overlay])
    assert f"  {overlay}: risk.max_open_positon: unknown key" in str(err.value)


def test_a_key_from_the_environment_names_no_single_file_but_the_header_names_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlay = write(tmp_path, "best.yaml", {"gates": {"kronos": {"min_confidence": 0.6}}})
    monkeypatch.setenv("KRONOS_BOT__GATES__KRONOS__MIN_CONFIDENCE", "7")
    with pytest.raises(ConfigError) as err:
        load_settings([SHIPPED_CONFIG, overlay])
    lines = str(err.value).splitlines()
    assert lines[0] == f"invalid configuration ({SHIPPED_CONFIG} + {overlay}):"
    assert lines[1].startswith("  gates.kronos.min_confidence: ")
    assert "[set by environment variable KRONOS_BOT__GATES__KRONOS__MIN_CONFIDENCE]" in lines[1]


def test_an_empty_overlay_is_refused_like_an_empty_config(tmp_path: Path) -> None:
    overlay = write(tmp_path, "best.yaml", "# only a comment\n")
    with pytest.raises(ConfigError) as err:
        load_settings([SHIPPED_CONFIG, overlay])
    assert str(overlay) in str(err.value)
    assert "(file): is empty" in str(err.value)


def test_a_secret_in_an_overlay_is_refused_naming_the_overlay(tmp_path: Path) -> None:
    overlay = write(tmp_path, "best.yaml", {"broker": {"Alpaca-Secret-Key": "abc"}})
    with pytest.raises(ConfigError) as err:
        load_settings([SHIPPED_CONFIG, overlay])
    message = str(err.value)
    assert message.splitlines()[0].startswith(f"invalid configuration ({overlay}")
    assert "broker.Alpaca-Secret-Key: secrets belong in the environment or .env (as ALPACA_SECRET_KEY)" in message
    assert "abc" not in message


def test_a_journal_path_problem_names_the_overlay_that_set_it(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory belongs")
    overlay = write(tmp_path, "best.yaml", {"journal": {"path": str(tmp_path / "blocker" / "j.sqlite")}})
    settings = load_settings([SHIPPED_CONFIG, overlay])
    with pytest.raises(ConfigError) as err:
        check_journal_path(settings, None)
    assert f"  {overlay}: journal.path: " in str(err.value)


def test_path_resolution_accepts_one_path_or_several(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_config_paths(None) == [Path("config/bot.yaml")]
    assert resolve_config_paths([]) == [Path("config/bot.yaml")]
    assert resolve_config_paths("a.yaml") == [Path("a.yaml")]
    assert resolve_config_paths(["a.yaml", Path("b.yaml")]) == [Path("a.yaml"), Path("b.yaml")]
    assert resolve_config_path(["a.yaml", "b.yaml"]) == Path("a.yaml")  # the base file
    monkeypatch.setenv("KRONOS_BOT_CONFIG", "from-env.yaml")
    assert resolve_config_paths(None) == [Path("from-env.yaml")]
    assert resolve_config_paths(["only.yaml"]) == [Path("only.yaml")]


# ----- the command line -----


def test_config_given_before_and_after_the_sub_command_is_merged_in_command_line_order(tmp_path: Path) -> None:
    low = write(tmp_path, "low.yaml", {"gates": {"kronos": {"min_confidence": 0.6}}})
    high = write(tmp_path, "high.yaml", {"gates": {"kronos": {"min_confidence": 0.8}}})
    parser = cli.build_parser()
    before_after = parser.parse_args(["--config", str(SHIPPED_CONFIG), "config", "check", "--config", str(low)])
    assert before_after.config == [str(SHIPPED_CONFIG), str(low)]
    everywhere = parser.parse_args(
        ["--config", "a", "--config", "b", "config", "--config", "c", "check", "--config", "d", "--json"]
    )
    assert everywhere.config == ["a", "b", "c", "d"]
    assert parser.parse_args(["status", "--config", "x"]).config == ["x"]
    assert parser.parse_args(["status"]).config is None

    def confidence(*argv: str) -> float:
        return load_settings(parser.parse_args(list(argv)).config).gates.kronos.min_confidence

    base = str(SHIPPED_CONFIG)
    assert confidence("--config", base, "--config", str(low), "status", "--config", str(high)) == 0.8
    assert confidence("--config", base, "--config", str(high), "status", "--config", str(low)) == 0.6


def test_config_check_shows_the_files_in_order_and_the_merged_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    overlay = write(tmp_path, "best.yaml", {"exits": {"trail_percent": 1.25}})
    code, out, err = run(capsys, "--config", str(SHIPPED_CONFIG), "config", "check", "--config", str(overlay))
    assert code == 0, err
    assert f"#   1. {SHIPPED_CONFIG}\n#   2. {overlay}\n" in out
    assert printed_config(out)["exits"]["trail_percent"] == 1.25
    code, out, err = run(capsys, "config", "check", "--config", str(SHIPPED_CONFIG), "--config", str(overlay), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["config_files"] == [str(SHIPPED_CONFIG), str(overlay)]
    assert shown["config_file"] == str(SHIPPED_CONFIG)
    assert shown["config"]["exits"]["trail_percent"] == 1.25


def test_a_missing_overlay_is_one_clear_refusal_with_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "out" / "best.yaml"
    code, out, err = run(capsys, "config", "check", "--config", str(SHIPPED_CONFIG), "--config", str(missing))
    assert code == 2
    assert out == ""
    assert f"{missing}, overlay on {SHIPPED_CONFIG}" in err
    assert "  (file): not found\n" in err
    assert "refusing to start" in err


def test_a_bad_overlay_stops_a_command_before_it_starts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    overlay = write(tmp_path, "best.yaml", {"gates": {"kronos": {"min_confidence": 7}}})
    code, _out, err = run(capsys, "status", "--config", str(SHIPPED_CONFIG), "--config", str(overlay))
    assert code == 2
    assert f"  {overlay}: gates.kronos.min_confidence: " in err


def test_the_installed_entry_point_checks_a_layered_config(tmp_path: Path) -> None:
    """The command the optimiser's report tells users to run, as a real process."""
    entry_point = shutil.which("kronos-bot", path=str(Path(sys.executable).parent))
    assert entry_point, "the kronos-bot console script is not installed next to this Python"
    overlay = write(tmp_path, "best.yaml", {"gates": {"kronos": {"min_confidence": 0.65}}})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    result = subprocess.run(
        [entry_point, "config", "check", "--config", str(SHIPPED_CONFIG), "--config", str(overlay)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert printed_config(result.stdout)["gates"]["kronos"]["min_confidence"] == 0.65
    assert "config OK" in result.stderr
