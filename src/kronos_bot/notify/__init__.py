"""Push notifications of the trader (Telegram, Discord, ntfy, e-mail, webhooks...) through apprise.

`messages` turns the trader's events into short phone-readable texts (pure functions), `sender` delivers
them to each URL of KRONOS_BOT_NOTIFY_URLS from one background thread so that a slow or dead endpoint
never touches the trading path, and `listener` is the `TraderEvents` listener that applies the switches
and the minimum level of `notify:` before handing a message over. URLs carry tokens: only their masked
form is ever logged or printed.
"""
