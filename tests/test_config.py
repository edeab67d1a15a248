"""The settings object: YAML + env + .env, strict keys, ranges, clear errors, secrets kept secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kronos_bot.config import ConfigError, Settings, load_settings, resolve_config_path
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
    for secret in ("alpaca_api_key", "alpaca_secret_key", "hf_token", "forecaster_token", "live_trading_confirm"):
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
