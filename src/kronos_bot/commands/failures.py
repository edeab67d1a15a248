"""The known failures of every `kronos-bot` command: one line on stderr and a documented exit code.

Why one place: every command meets the same few failures (the model cannot be loaded, market data or the
broker cannot be reached, the journal cannot be used, an input file or argument is wrong). Each command
lets them propagate and `kronos_bot.cli.main` turns them into the same message, with the fix where one
is known, and the same exit code -- never a traceback, unless `--log-level DEBUG` asks for one. An
exception that is not listed here is a bug and keeps its traceback.

Exit codes (README "Commands"):

    0    ok
    1    the command ran but its work failed (a notification not delivered, a cycle that failed...)
    2    configuration, argument or input file problem (argparse uses 2 for bad arguments too), including
         a journal path that cannot be used and live trading without both switches
    3    no forecasts: the model cannot be loaded, or the forecaster service is unavailable
    4    market data unavailable (Alpaca data unreachable, refused, or no usable bars)
    5    broker unavailable or refusing (unreachable, bad keys, an order refused)
    6    journal unusable (not a database, locked, read-only, written by a newer kronos-bot)
    130  interrupted (Ctrl-C)

The table names exception classes by module and name rather than importing them: this module stays
torch- and alpaca-free, and an exception whose module was never imported cannot have been raised.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_MARKET_DATA = 4
EXIT_BROKER = 5
EXIT_JOURNAL = 6
EXIT_INTERRUPTED = 130

MODEL_FIX = (
    "run `kronos-bot download-model` on a machine with internet (and copy the Hugging Face cache here), "
    "or point forecaster.model / --model at a local folder"
)
FORECASTER_FIX = (
    "start the service (`kronos-bot forecaster`, or systemctl start kronos-forecaster) "
    "or set forecaster.mode: inprocess"
)
MARKET_DATA_FIX = (
    "check the network and bars.data_url_override; a backtest or evaluation can read CSV files with --data DIR"
)
MARKET_DATA_AUTH_FIX = "check ALPACA_API_KEY / ALPACA_SECRET_KEY in the environment or .env"
BROKER_FIX = "check the network and broker.trading_url_override, or run without Alpaca keys (simulated broker)"
BROKER_AUTH_FIX = (
    "check ALPACA_API_KEY / ALPACA_SECRET_KEY in the environment or .env: paper keys work only with broker.live: false"
)


class InputError(ValueError):
    """An argument or input file a command cannot use; the message names it (exit 2)."""


class JournalUnusable(RuntimeError):
    """The journal file cannot be opened or read; names the file, the cause and the fix (exit 6)."""

    def __init__(self, path: str | Path, cause: BaseException) -> None:
        self.path = str(path)
        self.cause = cause
        said = str(cause) if self.path in str(cause) else f"{self.path}: {cause}"
        super().__init__(f"journal {said} ({journal_fix(cause)})")


def journal_fix(cause: BaseException) -> str:
    """What to do about a journal that SQLite (or the schema check) refuses, from the error's words."""
    text = str(cause).lower()
    if "newer" in text:
        return "it was written by a newer kronos-bot: upgrade, or point journal.path at another file"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return "it is not a kronos-bot journal or it is damaged: move it aside or point journal.path at the right file"
    if "locked" in text or "busy" in text:
        return "another process holds it locked: wait for it or stop it, then try again"
    if "readonly" in text or "read-only" in text or "unable to open" in text or isinstance(cause, PermissionError):
        return "check that this user can write the file and its directory, or point journal.path elsewhere"
    return "check the file, or point journal.path at another one"


@dataclass(frozen=True)
class Failure:
    """What a command says about one exception, and how it exits."""

    code: int
    message: str


@dataclass(frozen=True)
class KnownFailure:
    """One exception class (by module and name) and how it is reported."""

    module: str
    name: str
    code: int
    what: str  # the words before the exception's own message ("" when that message says it all)
    fix: Callable[[BaseException], str | None]
    said_if: str = ""  # a word showing the exception's own message already gives the fix


def _fixed(text: str) -> Callable[[BaseException], str | None]:
    return lambda _exc: text


def _none(_exc: BaseException) -> str | None:
    return None


def _market_data_fix(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return MARKET_DATA_AUTH_FIX if status in (401, 403) else MARKET_DATA_FIX


def _own_fix(exc: BaseException) -> str | None:
    """The fix the exception class carries itself (BrokerAuthError.FIX), else our own wording of it."""
    return getattr(type(exc), "FIX", None) or BROKER_AUTH_FIX


# Most specific first: the first class the exception is an instance of decides.
KNOWN_FAILURES: tuple[KnownFailure, ...] = (
    KnownFailure("kronos_bot.config", "ConfigError", EXIT_USAGE, "", _none),
    KnownFailure("kronos_bot.commands.failures", "InputError", EXIT_USAGE, "", _none),
    KnownFailure(
        "kronos_bot.kronos.hub",
        "ModelLoadError",
        EXIT_MODEL,
        "cannot load the model",
        _fixed(MODEL_FIX),
        "download-model",
    ),
    KnownFailure(
        "kronos_bot.forecast_types", "ForecasterUnavailable", EXIT_MODEL, "no forecasts", _fixed(FORECASTER_FIX)
    ),
    KnownFailure("kronos_bot.forecaster.server", "StartupRefused", EXIT_USAGE, "", _none),
    KnownFailure(
        "kronos_bot.market.alpaca_http",
        "MarketDataError",
        EXIT_MARKET_DATA,
        "market data unavailable",
        _market_data_fix,
        "ALPACA_API_KEY",
    ),
    # Refusals of the configuration (broker.live without its confirmation, no keys): exit 2 like any config error.
    KnownFailure("kronos_bot.broker.alpaca", "LiveTradingRefused", EXIT_USAGE, "live trading refused", _none),
    KnownFailure("kronos_bot.broker.alpaca", "BrokerConfigError", EXIT_USAGE, "the broker cannot start", _none),
    KnownFailure(
        "kronos_bot.broker.base",
        "BrokerAuthError",
        EXIT_BROKER,
        "the broker refuses the keys",
        _own_fix,
        "ALPACA_API_KEY",
    ),
    KnownFailure(
        "kronos_bot.broker.base", "BrokerUnavailable", EXIT_BROKER, "the broker is unavailable", _fixed(BROKER_FIX)
    ),
    KnownFailure("kronos_bot.broker.base", "BrokerError", EXIT_BROKER, "the broker refused", _none),
    KnownFailure("kronos_bot.commands.failures", "JournalUnusable", EXIT_JOURNAL, "", _none),
    KnownFailure("kronos_bot.trader.journal", "JournalError", EXIT_JOURNAL, "journal unusable", journal_fix),
    KnownFailure("sqlite3", "Error", EXIT_JOURNAL, "journal or cache file unusable", journal_fix),
)


def _known_class(entry: KnownFailure) -> type[BaseException] | None:
    """The class of `entry` if its module is loaded (if not, nothing can have raised it)."""
    found = getattr(sys.modules.get(entry.module), entry.name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def describe_failure(exc: BaseException, command: str) -> Failure | None:
    """The message and exit code for a known failure of `command`, or None for an unexpected exception."""
    if isinstance(exc, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, f"kronos-bot {command}: interrupted")
    for entry in KNOWN_FAILURES:
        cls = _known_class(entry)
        if cls is None or not isinstance(exc, cls):
            continue
        if entry.module == "kronos_bot.config":
            # Multi-line by design (one line per key), worded like the refusal before any command runs.
            from kronos_bot.config import START_REFUSED

            return Failure(entry.code, f"kronos-bot: {exc}\nkronos-bot: {START_REFUSED}")
        detail = str(exc) or type(exc).__name__
        text = f"{entry.what}: {detail}" if entry.what else detail
        fix = entry.fix(exc)
        if fix and "fix:" not in text and not (entry.said_if and entry.said_if in text):
            text = f"{text}; fix: {fix}"
        return Failure(entry.code, f"kronos-bot {command}: {text}")
    return None
