"""Serves the trader's /metrics over HTTP on `metrics.host`:`metrics.port`, in a daemon thread.

The standard library's WSGI server with prometheus_client's WSGI app: a scrape every few seconds needs no
more, and the trader keeps no web framework. Off loopback every request must carry
`Authorization: Bearer $KRONOS_BOT_METRICS_TOKEN` (the config refuses to start without the token there);
a port already in use is logged (`metrics.unavailable`) and the trader trades on without metrics.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from kronos_bot.logs import get_logger

log = get_logger("kronos_bot.trader.metrics")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: a scrape every 15 s would drown the journal."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


def metrics_app(registry: CollectorRegistry, token: str | None) -> WsgiApp:
    """/metrics of `registry`; 401 without the bearer token when one is set; 404 for any other path."""
    inner = make_wsgi_app(registry)
    expected = f"Bearer {token}".encode() if token else None

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/metrics/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the trader serves /metrics only\n"]
        if expected is not None:
            given = environ.get("HTTP_AUTHORIZATION", "").encode()
            if not hmac.compare_digest(given, expected):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                return [b"missing or wrong bearer token\n"]
        return inner(environ, start_response)

    return app


class MetricsServer:
    """The HTTP server thread; `start()` returns False (logged) when the address cannot be bound."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, token: str | None = None) -> None:
        self.app = metrics_app(registry, token)
        self.host = host
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        try:
            self._server = make_server(
                self.host, self.port, self.app, server_class=_ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            log.error(
                "metrics.unavailable",
                host=self.host,
                port=self.port,
                error=str(exc),
                effect="the trader runs without /metrics; free the port or change metrics.port",
            )
            return False
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics.serving", url=f"http://{self.host}:{self.port}/metrics")
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
