"""structlog set-up: one JSON object per line for journald, a readable renderer on a terminal.

Every event name is stable (`decision`, `order.submitted`, `data.invalid`, ...) and every fact is a key,
so `journalctl -o cat | jq` and `kronos-bot logs` can read the log without parsing prose. Values have
one encoding (`plain_value`: Decimal as a plain decimal string, times in ISO UTC, enums by value).
A redaction processor runs last before rendering so that no secret value can reach the output, whatever
a caller passes in.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import PurePath
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


def plain_value(value: Any) -> Any:
    """A log value as `jq` and a reader want it; the one encoding every event goes through.

    Decimal -> its plain decimal string (`"60.00"`, never `Decimal('60.00')` or an exponent), datetimes ->
    ISO 8601 in UTC, dates -> ISO, timedeltas -> seconds, enums -> their value, paths -> str, sets ->
    sorted lists, dataclasses -> dicts; containers are converted all the way down.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, enum.Enum):
        return plain_value(value.value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((plain_value(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_value(dataclasses.asdict(value))
    return value


def plain_values(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every value through `plain_value` (exceptions and tracebacks are already text)."""
    for key, value in event_dict.items():
        event_dict[key] = plain_value(value)
    return event_dict


# The keys a reader looks for first, in this order; the rest follow as the code logged them.
LEADING_KEYS = ("ts", "level", "event", "symbol", "action")


def leading_keys_first(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: `ts level event symbol action` first (console and JSON alike), then the rest."""
    ordered = {key: event_dict[key] for key in LEADING_KEYS if key in event_dict}
    ordered.update((key, value) for key, value in event_dict.items() if key not in ordered)
    return ordered


def adopt_library_logger(name: str) -> None:
    """Route a third-party library's logger through our handler only.

    Some libraries (huggingface_hub) attach their own StreamHandler at import and also propagate to the
    root logger, so each of their warnings was printed twice: once raw, once as our JSON. Dropping their
    stream handlers leaves the one path through structlog. Call it after the library is imported.
    """
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)
    logger.propagate = True


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    if fmt == "auto":
        return "console" if stream.isatty() else "json"
    return fmt


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and route stdlib logging through the same renderer)."""
    stream = stream or sys.stdout
    renderer: Any
    if resolve_format(fmt, stream) == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty(), sort_keys=False)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        plain_values,
        redact_secrets,
        leading_keys_first,
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
                plain_values,
                redact_secrets,
                leading_keys_first,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # `warnings.warn` of libraries (huggingface_hub, urllib3) as log events, once, in our format.
    logging.captureWarnings(False)  # re-installed each time: a configure after a warnings context still takes
    logging.captureWarnings(True)
    for name in ("huggingface_hub",):
        if name in sys.modules:
            adopt_library_logger(name)
    root.setLevel(logging.WARNING if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A bound logger; `initial` keys are attached to every event it emits."""
    logger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger.bind(**initial) if initial else logger


# `with bound_context(cycle_id=...):` attaches keys to every event logged inside the block.
bound_context = structlog.contextvars.bound_contextvars
