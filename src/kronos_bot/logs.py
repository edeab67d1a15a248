"""structlog set-up: one JSON object per line for journald, a readable renderer on a terminal.

Every event name is stable (`decision`, `order.submitted`, `data.invalid`, ...) and every fact is a key,
so `journalctl -o cat | jq` and `scripts/decision_table.py` can read the log without parsing prose.
A redaction processor runs last before rendering so that no secret value can reach the output, whatever
a caller passes in.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from pydantic import SecretStr

LogFormat = Literal["auto", "json", "console"]
REDACTED = "**********"
# A key is sensitive when its last word (split on non-alphanumerics) is one of these, or it contains one of
# the word pairs: `api_token`, `X-Api-Key`, `alpaca_secret_key` are masked; `tokenizer`, `token_dropout_p`
# (model config values we do want to see) are not.
_SENSITIVE_LAST_WORDS = frozenset({"secret", "password", "passwd", "token", "apikey", "authorization", "credentials"})
_SENSITIVE_PAIRS = (("api", "key"), ("secret", "key"), ("private", "key"), ("access", "key"))
_secret_values: set[str] = set()


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    """Remember secret values so the redaction processor can mask them anywhere they appear."""
    for value in values:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw and len(raw) >= 4:
            _secret_values.add(raw)


def _scrub(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str):
        for secret in _secret_values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if _is_sensitive_key(k) and v else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def _is_sensitive_key(key: object) -> bool:
    words = [w for w in re.split(r"[^a-z0-9]+", str(key).lower()) if w]
    if words and words[-1] in _SENSITIVE_LAST_WORDS:
        return True
    return any(pair == tuple(words[i : i + 2]) for pair in _SENSITIVE_PAIRS for i in range(len(words) - 1))


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: masks sensitive keys and any registered secret value inside strings."""
    for key in list(event_dict):
        value = event_dict[key]
        if _is_sensitive_key(key) and value not in (None, "", False):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    if fmt == "auto":
        return "console" if stream.isatty() else "json"
    return fmt


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and route stdlib logging through the same renderer)."""
    stream = stream or sys.stdout
    renderer: Any
    if resolve_format(fmt, stream) == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through stdlib; show their warnings in the same format.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                redact_secrets,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A bound logger; `initial` keys are attached to every event it emits."""
    logger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger.bind(**initial) if initial else logger


# `with bound_context(cycle_id=...):` attaches keys to every event logged inside the block.
bound_context = structlog.contextvars.bound_contextvars
