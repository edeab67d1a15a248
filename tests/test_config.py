"""The settings object: YAML + env + .env, strict keys, ranges, clear errors, secrets kept secret."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kronos_bot.config import SECRET_FIELDS, ConfigError, Settings, load_settings, resolve_config_path
from tests.conftest import SHIPPED_CONFIG


def write_yaml(tmp_path: Path, data: object, name: str = "bot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def shipped() -> dict:
    return yaml.safe_load(SHIPPED_CONFIG.read_text())


def test_shipped_config_is_valid_and_matches_design_defaults() -> None:
    settings = load_settings(SHIPPED_CONFIG)
    assert settings.symbols == ["BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD"]
    assert settings.engine.tiers.triple_confirmed == 1.0
    assert settings.engine.tiers.kronos_only == 0.6
    assert settings.gates.kronos.min_confidence == 0.55
    assert settings.bars.count == 60
    assert settings.schedule.entry_minutes == "0,15,30,45"
    assert settings.broker.live is False


def _leaf_paths(data: dict, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths |= _leaf_paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def test_shipped_yaml_lists_every_setting_with_a_comment() -> None:
    defaults = Settings.model_construct().redacted()
    for secret in SECRET_FIELDS:
        defaults.pop(secret)
    assert _leaf_paths(shipped()) == _leaf_paths(defaults)
    for line in SHIPPED_CONFIG.read_text().splitlines():
        if re.match(r"^\s*[a-z_]+:\s*\S", line):  # a key with a value on the same line
            assert "#" in line, f"setting without a comment: {line!r}"


def test_shipped_yaml_values_equal_code_defaults() -> None:
    """The YAML documents the defaults; a drift between the two would mislead whoever reads it."""
    from_yaml = load_settings(SHIPPED_CONFIG).redacted()
    empty = load_settings(write_yaml(Path.cwd(), {}, "empty.yaml")).redacted()
    assert from_yaml == empty


def test_unknown_key_is_rejected_with_path(tmp_path: Path) -> None:
    data = shipped()
    data["gates"]["kronos"]["min_confidance"] = 0.6
    with pytest.raises(ConfigError) as err:
        load_settings(write_yaml(tmp_path, data))
    assert "gates.kronos.min_confidance: unknown key" in str(err.value)
    assert str(tmp_path / "bot.yaml") in str(err.value)


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("gates", "kronos", "min_confidence"), 1.5, "less than or equal to 1"),
        (("engine", "tiers", "kronos_only"), 0.0, "greater than 0"),
        (("engine", "tiers", "triple_confirmed"), 1.2, "less than or equal to 1"),
        (("bars", "count"), 600, "less than or equal to 512"),
        (("gates", "kronos", "pred_len"), 0, "greater than or equal to 1"),
        (("exits", "trail_percent"), 50, "less than 50"),
        (("exits", "trail_percent"), 0, "greater than 0"),
        (("schedule", "entry_minutes"), "0,15,60", "not a valid cron minute expression"),
        (("symbols",), ["BTCUSD"], "BASE/USD form"),
        (("symbols",), ["BTC/EUR"], "BASE/USD form"),
        (("gates", "kronos", "horizon"), 9, "must be <= pred_len"),
        (("gates", "technical", "rsi_max"), 30, "must be greater than rsi_min"),
        (("gates", "technical", "ema_slow"), 12, "must be greater than ema_fast"),
        (("gates", "sentiment", "bearish_threshold"), 0.2, "must be below bullish_threshold"),
        (("broker", "kind"), "binance", "Input should be 'auto', 'alpaca' or 'sim'"),
    ],
)
def test_out_of_range_values_name_the_key(tmp_path: Path, path: tuple[str, ...], value: object, needle: str) -> None:
    data = shipped()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        load_settings(write_yaml(tmp_path, data))
    message = str(err.value)
    assert needle in message
    assert ".".join(path) in message


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRONOS_BOT__GATES__KRONOS__MIN_CONFIDENCE", "0.7")
    monkeypatch.setenv("KRONOS_BOT__SYMBOLS", '["ETH/USD"]')
    settings = load_settings(SHIPPED_CONFIG)
    assert settings.gates.kronos.min_confidence == 0.7
    assert settings.symbols == ["ETH/USD"]


def test_bad_env_override_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRONOS_BOT__RISK__MAX_OPEN_POSITIONS", "0")
    with pytest.raises(ConfigError) as err:
        load_settings(SHIPPED_CONFIG)
    assert "risk.max_open_positions" in str(err.value)
    assert "KRONOS_BOT__RISK__MAX_OPEN_POSITIONS" in str(err.value)


def test_misspelt_env_override_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRONOS_BOT__RISK__MAX_POSITIONS", "2")
    with pytest.raises(ConfigError) as err:
        load_settings(SHIPPED_CONFIG)
    assert "risk.max_positions: unknown key" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value) and "not found" in str(err.value)


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("symbols: [BTC/USD\nbars:\n  count: 60\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "bot.yaml" in str(err.value) and "line" in str(err.value)


def test_secret_in_yaml_is_refused(tmp_path: Path) -> None:
    data = shipped()
    data["alpaca_secret_key"] = "do-not-do-this"
    with pytest.raises(ConfigError) as err:
        load_settings(write_yaml(tmp_path, data))
    assert "alpaca_secret_key" in str(err.value)
    assert "do-not-do-this" not in str(err.value)


def test_secrets_from_env_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("ALPACA_API_KEY=key-from-dotenv\nALPACA_SECRET_KEY=\nHF_TOKEN=hf_abc\n")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "secret-from-env")
    settings = load_settings(SHIPPED_CONFIG)
    assert settings.alpaca_api_key is not None
    assert settings.alpaca_api_key.get_secret_value() == "key-from-dotenv"
    assert settings.alpaca_secret_key.get_secret_value() == "secret-from-env"
    assert settings.has_alpaca_keys and settings.effective_broker() == "alpaca"
    dumped = repr(settings) + str(settings.redacted())
    for raw in ("key-from-dotenv", "secret-from-env", "hf_abc"):
        assert raw not in dumped


def test_empty_secrets_count_as_unset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ALPACA_API_KEY=\nALPACA_SECRET_KEY=\n")
    settings = load_settings(SHIPPED_CONFIG)
    assert settings.alpaca_api_key is None
    assert settings.effective_broker() == "sim"


def test_config_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_config_path(None) == Path("config/bot.yaml")
    (tmp_path / ".env").write_text("KRONOS_BOT_CONFIG=from-dotenv.yaml\n")
    assert resolve_config_path(None) == Path("from-dotenv.yaml")
    monkeypatch.setenv("KRONOS_BOT_CONFIG", "from-env.yaml")
    assert resolve_config_path(None) == Path("from-env.yaml")
    assert resolve_config_path("explicit.yaml") == Path("explicit.yaml")


def test_fingerprint_changes_with_thresholds_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    base = load_settings(SHIPPED_CONFIG).fingerprint()
    monkeypatch.setenv("ALPACA_API_KEY", "whatever")
    assert load_settings(SHIPPED_CONFIG).fingerprint() == base
    monkeypatch.setenv("KRONOS_BOT__RISK__COOLDOWN_MINUTES", "30")
    assert load_settings(SHIPPED_CONFIG).fingerprint() != base


# ----- issue #12 item 5: config holes -----

SECRET_NAMES_AS_WRITTEN = [
    "alpaca_api_key",
    "ALPACA_API_KEY",
    "Alpaca_Secret_Key",
    "ALPACA_SECRET_KEY",
    "hf_token",
    "HF_TOKEN",
    "forecaster_token",
    "KRONOS_BOT_FORECASTER_TOKEN",
    "kronos_bot_forecaster_token",
    "live_trading_confirm",
    "KRONOS_BOT_LIVE_TRADING",
    "APCA_API_KEY_ID",
    "apca_api_secret_key",
    "alpaca-secret-key",
]


@pytest.mark.parametrize("name", SECRET_NAMES_AS_WRITTEN)
def test_secret_in_yaml_is_refused_under_any_name_and_case(tmp_path: Path, name: str) -> None:
    data = shipped()
    data[name] = "sekrit-value-123"
    with pytest.raises(ConfigError) as err:
        load_settings(write_yaml(tmp_path, data))
    message = str(err.value)
    assert f"  {name}: secrets belong in the environment or .env (as " in message
    assert str(tmp_path / "bot.yaml") in message
    assert "sekrit-value-123" not in message


@pytest.mark.parametrize(
    ("section", "name"),
    [
        (("broker",), "alpaca_secret_key"),
        (("gates", "kronos"), "HF_TOKEN"),
        (("forecaster",), "Kronos_Bot_Forecaster_Token"),
    ],
)
def test_secret_nested_in_a_section_is_refused_as_a_secret(tmp_path: Path, section: tuple[str, ...], name: str) -> None:
    data = shipped()
    node = data
    for key in section:
        node = node[key]
    node[name] = "nested-sekrit-456"
    with pytest.raises(ConfigError) as err:
        load_settings(write_yaml(tmp_path, data))
    message = str(err.value)
    assert f"{'.'.join(section)}.{name}: secrets belong in the environment or .env" in message
    assert "unknown key" not in message
    assert "nested-sekrit-456" not in message


def test_secret_names_come_from_the_settings_fields_and_aliases() -> None:
    from pydantic import AliasChoices

    from kronos_bot.config import SECRET_FIELDS, secret_key_names

    names = secret_key_names()
    for field in SECRET_FIELDS:
        assert field in names
        alias = Settings.model_fields[field].validation_alias
        assert isinstance(alias, AliasChoices)
        for choice in alias.choices:
            assert str(choice).lower() in names
            assert names[str(choice).lower()] == alias.choices[0]
    assert names["apca_api_secret_key"] == "ALPACA_SECRET_KEY"
    assert "symbols" not in names and "journal" not in names


def test_kronos_only_above_triple_confirmed_is_refused(tmp_path: Path) -> None:
    data = shipped()
    data["engine"]["tiers"] = {"triple_confirmed": 0.5, "kronos_only": 0.9}
    with pytest.raises(ConfigError) as err:
        load_settings(write_yaml(tmp_path, data))
    message = str(err.value)
    assert "engine.tiers.kronos_only: " in message
    assert "must not exceed triple_confirmed (0.5)" in message
    assert "a partial confirmation must never be sized above a full one" in message


def test_kronos_only_equal_to_triple_confirmed_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = shipped()
    data["engine"]["tiers"] = {"triple_confirmed": 0.7, "kronos_only": 0.7}
    settings = load_settings(write_yaml(tmp_path, data))
    assert settings.engine.tiers.kronos_only == settings.engine.tiers.triple_confirmed == 0.7
    monkeypatch.setenv("KRONOS_BOT__ENGINE__TIERS__TRIPLE_CONFIRMED", "0.5")
    with pytest.raises(ConfigError) as err:
        load_settings(write_yaml(tmp_path, data))
    assert "engine.tiers.kronos_only" in str(err.value)


def _float_setting_paths(model: type, prefix: str = "") -> list[str]:
    """Dotted paths of every float setting, found from the models (Annotated aliases and optionals included)."""
    import typing

    from pydantic import BaseModel

    paths: list[str] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += _float_setting_paths(annotation, f"{prefix}{name}.")
        elif annotation is float or float in typing.get_args(annotation):
            paths.append(prefix + name)
    return paths


FLOAT_SETTINGS = _float_setting_paths(Settings)


def test_the_float_settings_walk_finds_every_kind() -> None:
    for path in (
        "sizing.fixed_usd",
        "engine.tiers.kronos_only",
        "gates.sentiment.fear_greed.weight",
        "bars.request_timeout_seconds",
        "exits.backstop.limit_offset_percent",
        "broker.sim.fee_percent",
    ):
        assert path in FLOAT_SETTINGS
    assert len(FLOAT_SETTINGS) > 30


@pytest.mark.parametrize("path", FLOAT_SETTINGS)
def test_non_finite_numbers_are_refused_for_every_float_setting(tmp_path: Path, path: str) -> None:
    keys = path.split(".")
    for literal in (".inf", "-.inf", ".nan"):
        data = shipped()
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = "PLACEHOLDER"
        config = tmp_path / "bot.yaml"
        config.write_text(yaml.safe_dump(data).replace("PLACEHOLDER", literal), encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_settings(config)
        assert f"{path}: Input should be a finite number, not infinity or NaN" in str(err.value), literal


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("KRONOS_BOT__SIZING__FIXED_USD", "inf", "sizing.fixed_usd"),
        ("KRONOS_BOT__GATES__KRONOS__MIN_CONFIDENCE", "nan", "gates.kronos.min_confidence"),
        ("KRONOS_BOT__EXITS__MAX_HOLD_HOURS", "Infinity", "exits.max_hold_hours"),
    ],
)
def test_non_finite_numbers_from_the_environment_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings(SHIPPED_CONFIG)
    message = str(err.value)
    assert f"{key}: Input should be a finite number, not infinity or NaN" in message
    assert f"[set by environment variable {variable}]" in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "null\n", "~\n", "---\n"])
def test_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == (
        f"invalid configuration ({path}):\n"
        "  (file): is empty (no settings, only comments or null); start from config/bot.yaml"
    )


def test_non_utf8_file_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_bytes(b"symbols: [BTC/USD]\nbars: {count: 60}  # \xff\xfe\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert f"invalid configuration ({path}):\n  (file): is not UTF-8 text (" in str(err.value)


def test_explicit_empty_mapping_still_means_the_defaults(tmp_path: Path) -> None:
    assert load_settings(write_yaml(tmp_path, {})).bars.count == 60


# ----- journal path -----


def test_journal_path_problem_accepts_usable_paths_and_creates_nothing(tmp_path: Path) -> None:
    from kronos_bot.config import journal_path_problem

    assert journal_path_problem("var/kronos-bot.sqlite") is None
    assert journal_path_problem(str(tmp_path / "a" / "b" / "journal.sqlite")) is None
    assert journal_path_problem(":memory:") is None
    (tmp_path / "existing.sqlite").write_bytes(b"")
    assert journal_path_problem("existing.sqlite") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.sqlite"]


def test_journal_path_problem_names_what_is_in_the_way(tmp_path: Path) -> None:
    from kronos_bot.config import journal_path_problem

    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "adir").mkdir()
    assert journal_path_problem("afile/journal.sqlite") == f"its directory {tmp_path / 'afile'} is not a directory"
    assert journal_path_problem("afile/x/y/journal.sqlite") == (
        f"its directory {tmp_path / 'afile/x/y'} does not exist and cannot be created: "
        f"{tmp_path / 'afile'} is not a directory"
    )
    assert journal_path_problem("adir") == f"{tmp_path / 'adir'} is a directory; give the path of a file inside it"
    assert journal_path_problem("adir/") == "ends with a slash; give the path of a file (e.g. var/kronos-bot.sqlite)"
    assert journal_path_problem("") == "is empty; give the journal's file path (e.g. var/kronos-bot.sqlite)"
    assert journal_path_problem("/dev/null") == "/dev/null exists and is not a regular file"


def test_journal_path_problem_reports_unwritable_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission bits do not stop root, so os.access is faked here; the real-bits variant follows."""
    from kronos_bot import config

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "journal.sqlite").write_bytes(b"")
    real_access = os.access
    monkeypatch.setattr(config.os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    assert config.journal_path_problem("locked/journal.sqlite").startswith(
        f"its directory {locked} is not writable by "
    )
    assert config.journal_path_problem("locked/new/journal.sqlite").startswith(
        f"its directory {locked / 'new'} does not exist and cannot be created: {locked} is not writable by "
    )
    monkeypatch.setattr(
        config.os,
        "access",
        lambda p, mode: False if str(p).endswith("journal.sqlite") else real_access(p, mode),
    )
    assert config.journal_path_problem("locked/journal.sqlite").startswith(
        f"the file {locked / 'journal.sqlite'} exists but is not readable and writable by "
    )


def test_journal_path_problem_with_real_permission_bits(tmp_path: Path) -> None:
    from kronos_bot.config import journal_path_problem

    if os.getuid() == 0:
        pytest.skip("root writes through permission bits")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "journal.sqlite").write_bytes(b"")
    (tmp_path / "ro.sqlite").write_bytes(b"")
    (tmp_path / "ro.sqlite").chmod(0o400)
    locked.chmod(0o500)
    try:
        assert "is not writable by" in (journal_path_problem("locked/journal.sqlite") or "")
        assert "cannot be created" in (journal_path_problem("locked/sub/journal.sqlite") or "")
        assert "exists but is not readable and writable" in (journal_path_problem("ro.sqlite") or "")
    finally:
        locked.chmod(0o700)


def test_journal_path_problem_on_a_read_only_tree_even_as_root() -> None:
    from kronos_bot.config import journal_path_problem

    if os.access("/proc/sys", os.W_OK):
        pytest.skip("/proc/sys is writable here")
    assert (journal_path_problem("/proc/sys/kronos/journal.sqlite") or "").startswith(
        "its directory /proc/sys/kronos does not exist and cannot be created: /proc/sys is not writable by "
    )


def test_check_journal_path_raises_a_config_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kronos_bot.config import check_journal_path

    (tmp_path / "afile").write_text("x")
    config = write_yaml(tmp_path, {**shipped(), "journal": {"path": "afile/journal.sqlite"}})
    settings = load_settings(config)
    with pytest.raises(ConfigError) as err:
        check_journal_path(settings, config)
    assert str(err.value) == (
        f"invalid configuration ({config}):\n"
        f"  journal.path: its directory {tmp_path / 'afile'} is not a directory (got 'afile/journal.sqlite')"
    )
    monkeypatch.setenv("KRONOS_BOT__JOURNAL__PATH", "/dev/null")
    with pytest.raises(ConfigError) as err:
        check_journal_path(load_settings(config), config)
    assert "[set by environment variable KRONOS_BOT__JOURNAL__PATH]" in str(err.value)
    monkeypatch.delenv("KRONOS_BOT__JOURNAL__PATH")
    check_journal_path(load_settings(SHIPPED_CONFIG), SHIPPED_CONFIG)  # var/ under a writable cwd: fine


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    entry_point = shutil.which("kronos-bot", path=str(Path(sys.executable).parent))
    assert entry_point, "the kronos-bot console script is not installed next to this Python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
    return subprocess.run([entry_point, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.mark.parametrize("command", [("config", "check"), ("run",), ("once", "--trade"), ("once",)])
def test_unusable_journal_refuses_config_check_run_and_once(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "afile").write_text("x")
    config = write_yaml(tmp_path, {**shipped(), "journal": {"path": "afile/journal.sqlite"}})
    result = _cli(*command, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert (
        f"kronos-bot: invalid configuration ({config}):\n"
        f"  journal.path: its directory {tmp_path / 'afile'} is not a directory (got 'afile/journal.sqlite')\n"
        "kronos-bot: refusing to start; fix the configuration and try again.\n"
    ) == result.stderr
    assert "Traceback" not in result.stderr
    assert "config OK" not in result.stderr
