"""`kronos-bot forecaster`: load Kronos once and serve forecasts over HTTP (Unix socket by default).

This is the only long-running process that imports torch. It listens at once (so /healthz answers while
the weights load), tells systemd READY=1 when the model is loaded, and exits 0 on SIGTERM.

    kronos-bot forecaster                                   # socket from forecaster.socket_path
    kronos-bot forecaster --socket /tmp/kronos.sock --model tests/fixtures/kronos_tiny/model \\
        --tokenizer tests/fixtures/kronos_tiny/tokenizer --no-verify
    KRONOS_BOT_FORECASTER_TOKEN=... kronos-bot forecaster --host 0.0.0.0 --port 8765   # GPU host
"""

from __future__ import annotations

import argparse

from kronos_bot.commands.failures import InputError
from kronos_bot.config import Settings

NAME = "forecaster"
HELP = "serve Kronos forecasts over HTTP (Unix socket by default; TCP with a token for remote hosts)"
EXAMPLE = "example: kronos-bot forecaster --socket /run/kronos-bot/forecaster.sock --threads 2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where to listen (default: forecaster.socket_path)")
    where.add_argument("--socket", metavar="PATH", help="Unix socket path (mode 0660, directory created)")
    where.add_argument(
        "--host",
        metavar="HOST",
        help="TCP address instead of the socket (non-loopback needs KRONOS_BOT_FORECASTER_TOKEN)",
    )
    where.add_argument("--port", metavar="PORT", type=int, help="TCP port (default: forecaster.port)")
    model = parser.add_argument_group("model (default: from the config)")
    model.add_argument("--model", metavar="MODEL", help="predictor: Hub repo id or local directory")
    model.add_argument("--tokenizer", metavar="TOKENIZER", help="tokenizer: Hub repo id or local directory")
    model.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the checkpoint files")
    model.add_argument("--device", metavar="DEVICE", help="torch device (cpu, cuda, cuda:N)")
    model.add_argument("--threads", metavar="COUNT", type=int, help="torch CPU threads")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.forecaster.factory import load_model
    from kronos_bot.forecaster.server import EXIT_LOAD_FAILED, run
    from kronos_bot.forecaster.service import limits_from_settings
    from kronos_bot.logs import get_logger

    log = get_logger("kronos_bot.forecaster", component="forecaster")
    fs = settings.forecaster
    if args.socket and (args.host or args.port):
        raise InputError("give --socket or --host/--port, not both")
    tcp = bool(args.host or args.port)
    token = settings.forecaster_token.get_secret_value() if settings.forecaster_token else None
    overrides = {
        "model": args.model,
        "tokenizer": args.tokenizer,
        "verify": False if args.no_verify else None,
        "device": args.device,
        "threads": args.threads,
    }

    load_failures: list[BaseException] = []

    def loader() -> object:
        try:
            return load_model(settings, **overrides)
        except BaseException as exc:  # kept to be reported once the server has stopped
            load_failures.append(exc)
            raise

    log.info(
        "forecaster.starting",
        transport="tcp" if tcp else "unix",
        model=args.model or fs.model,
        tokenizer=args.tokenizer or fs.tokenizer,
        verify=not args.no_verify and fs.verify_sha256,
        auth=bool(token),
    )
    # A refusal to listen (StartupRefused) ends in cli.main with exit 2, a model that cannot be loaded
    # with exit 3: both as one line on stderr, after the service's own log lines.
    code = run(
        loader,  # type: ignore[arg-type]
        socket_path=None if tcp else (args.socket or fs.socket_path),
        host=(args.host or fs.host) if tcp else None,
        port=(args.port if args.port is not None else fs.port) if tcp else None,
        limits=limits_from_settings(fs),
        token=token,
        log=log,
        graceful_seconds=fs.shutdown_timeout_seconds,
        api_docs=fs.api_docs,
    )
    if code == EXIT_LOAD_FAILED and load_failures:
        raise load_failures[0]
    return code
