"""Logging: JSON lines with UTC timestamps, bound context, and secrets masked wherever they appear."""

from __future__ import annotations

import io
import json

from pydantic import SecretStr

from kronos_bot.logs import bound_context, configure_logging, get_logger, register_secrets


def capture(fmt: str = "json") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt=fmt, stream=stream)  # type: ignore[arg-type]
    return stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_with_utc_timestamp_and_context() -> None:
    stream = capture()
    with bound_context(cycle_id="c-1", symbol="BTC/USD"):
        get_logger().info("decision", action="SKIP")
    (event,) = lines(stream)
    assert event["event"] == "decision"
    assert event["cycle_id"] == "c-1" and event["symbol"] == "BTC/USD"
    assert event["level"] == "info"
    assert event["ts"].endswith("Z")


def test_secrets_are_redacted_by_key_and_by_value() -> None:
    stream = capture()
    register_secrets([SecretStr("PKTESTSECRET42"), "sk-another-one"])
    log = get_logger()
    log.info("http.request", api_key="PKTESTSECRET42", headers={"Authorization": "Bearer abc"})
    log.info("http.error", message="401 for key PKTESTSECRET42 and sk-another-one", token=SecretStr("x"))
    text = stream.getvalue()
    assert "PKTESTSECRET42" not in text and "sk-another-one" not in text and "Bearer abc" not in text
    first, second = lines(stream)
    assert first["api_key"] == "**********"
    assert first["headers"]["Authorization"] == "**********"
    assert "**********" in second["message"]


def test_only_whole_sensitive_words_mark_a_key() -> None:
    stream = capture()
    get_logger().info(
        "forecaster.model_loaded",
        tokenizer="NeoQuasar/Kronos-Tokenizer-base",
        token_dropout_p=0.1,
        tokenizer_sha256="abc",
        api_token="t0ps3cr3t",
        secret_key="k",
        password="p",
        x_api_key="q",
        alpaca_secret_key="z",
    )
    (event,) = lines(stream)
    assert event["tokenizer"] == "NeoQuasar/Kronos-Tokenizer-base"
    assert event["token_dropout_p"] == 0.1 and event["tokenizer_sha256"] == "abc"
    for key in ("api_token", "secret_key", "password", "x_api_key", "alpaca_secret_key"):
        assert event[key] == "**********", key


def test_console_renderer_is_readable() -> None:
    stream = capture("console")
    get_logger().info("cycle.start", cycle_id="c-2")
    text = stream.getvalue()
    assert "cycle.start" in text and "cycle_id" in text
    assert not text.lstrip().startswith("{")


def test_level_filtering() -> None:
    stream = io.StringIO()
    configure_logging(level="WARNING", fmt="json", stream=stream)
    get_logger().info("quiet")
    get_logger().warning("loud")
    assert [e["event"] for e in lines(stream)] == ["loud"]
