"""`kronos-bot notify-test`: send one test message to every URL of KRONOS_BOT_NOTIFY_URLS, now.

kronos-bot notify-test                 # one line per URL: "ok   <url>" or "FAIL <url>: <reason> (after N attempts)"
kronos-bot notify-test --attempts 1    # no retries: a quick answer for a URL being set up

URLs are printed masked (they carry tokens). The exit code is 0 only when every URL got the message, so
a deployment script can check the notification path before it starts the trader.
"""

from __future__ import annotations

import argparse
import sys

from kronos_bot.config import Settings

NAME = "notify-test"
HELP = "send a test notification to every URL in KRONOS_BOT_NOTIFY_URLS and report each (masked)"
LOGS_TO_STDERR = True
ENV_VAR = "KRONOS_BOT_NOTIFY_URLS"
EXAMPLE = "example: KRONOS_BOT_NOTIFY_URLS=ntfy://ntfy.sh/my-topic kronos-bot notify-test --attempts 1"


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError("must be between 1 and 10")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attempts", type=_positive, metavar="COUNT", help="attempts per URL (default: notify.max_attempts)"
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.notify.messages import notify_test_message
    from kronos_bot.notify.sender import NotificationSender

    urls = settings.notify_url_list()
    if not urls:
        print(
            f"kronos-bot notify-test: no notification URL configured; set {ENV_VAR} "
            "(apprise URLs, comma or space separated) in the environment or .env",
            file=sys.stderr,
        )
        return 1
    if not settings.notify.enabled:
        print("note: notify.enabled is false in the config: the trader sends nothing", file=sys.stderr)
    notify = settings.notify
    if args.attempts is not None:
        notify = notify.model_copy(update={"max_attempts": args.attempts})
    sender = NotificationSender(urls, notify)
    for masked in sender.invalid:
        print(f"FAIL {masked}: not a URL apprise can use (check the scheme and its parts)")
    outcomes = sender.send_now(notify_test_message()) if sender.targets else []
    for outcome in outcomes:
        if outcome.ok:
            print(f"ok   {outcome.masked_url}")
        else:
            noun = "attempt" if outcome.attempts == 1 else "attempts"
            print(f"FAIL {outcome.masked_url}: {outcome.error} (after {outcome.attempts} {noun})")
    return 0 if outcomes and all(o.ok for o in outcomes) and not sender.invalid else 1
