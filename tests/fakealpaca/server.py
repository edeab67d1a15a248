"""A small real-HTTP fake server for contract tests: routes, a request log and scripted faults.

Why real HTTP: the bot talks to Alpaca through alpaca-py (`requests` underneath). Pointing alpaca-py's
`url_override` at a server on 127.0.0.1 exercises the real client code paths — URL building, query
encoding, JSON parsing into alpaca-py's models, timeouts, status handling — which an in-process mock of
`requests` would skip. The server knows nothing about Alpaca; `market.py` (data API) and `trading.py`
(trading API) register Alpaca's routes on it.

The API (stable: other test modules build on it)
------------------------------------------------

    server = FakeServer()                      # not listening yet
    server.start()                             # binds 127.0.0.1 on a free port, serves in a daemon thread
    server.base_url                            # "http://127.0.0.1:PORT" (no trailing slash)

    @server.route("GET", r"/v2/orders/(?P<order_id>[^/]+)")
    def get_order(request: Request) -> Response:
        order_id = request.path_params["order_id"]
        return Response(json={"id": order_id})   # or Response.error(404, "order not found")

    server.add_route("POST", r"/v2/orders", handler)   # same thing without the decorator

Routes
    `pattern` is a regular expression matched with `re.fullmatch` against the URL path (no query string);
    named groups become `request.path_params`. The route registered LAST wins when several match, so a
    test can override a default route for one scenario. `method` is case-insensitive; "*" matches any.
    No match: 404 `{"code": 40410000, "message": "..."}`. A handler that raises: 500 with the exception
    text, and the exception is kept in `server.handler_errors` so a test can assert there were none.

Request (what a handler receives; also what the request log holds)
    method, path, query (dict[str, list[str]], as `urllib.parse.parse_qs`), headers (lower-case names),
    body (bytes), path_params, received_at (UTC datetime).  `request.arg("limit")` -> first value or
    default; `request.json` -> the parsed body (None if empty); `request.status` -> the status code the
    server answered (None while in flight), `request.fault` -> the fault kind applied, if any.

Response
    Response(status=200, json=<any JSON-able>, headers={...})  or  Response(status=204, body=b"")
    Response.error(status, message, code=None) -> Alpaca's error shape `{"code": ..., "message": ...}`.

Request log
    server.requests                      -> list[Request], in arrival order (a copy)
    server.requests_to(r"/v2/orders", method="POST") -> those whose path fullmatches the pattern
    server.clear_requests()

Faults (scripted per path pattern, applied BEFORE the route handler runs)
    handle = server.fail(r"/v1beta3/crypto/us/bars", Fault.rate_limited(retry_after=2), times=1)
    Fault.rate_limited(retry_after=1)     429 with a Retry-After header (seconds, or None for no header)
    Fault.server_error(status=500)        a 5xx with an Alpaca-style JSON error body
    Fault.http_status(403, "forbidden")   any status with an error body
    Fault.slow(seconds)                   waits `seconds`, then answers normally (use > client timeout)
    Fault.stall_after(seconds)            the route handler RUNS (the broker acts), then the answer waits
                                          `seconds`: "it reached the broker, the response never arrived"
    Fault.malformed_json()                200 with a truncated JSON body
    Fault.disconnect()                    closes the connection without answering
    `times=N` applies the fault to the next N matching requests, then the route answers normally;
    `times=None` applies it forever. Faults are consumed in the order they were added. `handle.hits`
    counts how often a fault fired; `server.clear_faults()` removes all. `method="POST"` limits a fault
    to one method; `when=lambda request: ...` to requests the predicate accepts (e.g. only page 2:
    `when=lambda r: r.arg("page_token") is not None`).

Thread safety: the server handles each request in its own thread; routes, faults and the log are
guarded by one lock, and handlers of the shared state modules take care of their own state.
`stop()` wakes any slow response immediately, so a test never waits for a sleeping handler.
"""

from __future__ import annotations

import json
import re
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

_NO_JSON = object()
FaultKind = Literal["status", "foreign_status", "slow", "stall_after", "malformed_json", "disconnect"]


@dataclass
class Request:
    """One HTTP request as the fake server saw it (also the entry type of the request log)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: int | None = None
    fault: FaultKind | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter, or `default`."""
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def json(self) -> Any:
        """The parsed JSON body (None when the body is empty); raises ValueError on invalid JSON."""
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class Response:
    """What a handler returns: a status, and either a JSON value or raw bytes, plus headers."""

    status: int = 200
    json: Any = _NO_JSON
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, message: str, code: int | None = None) -> Response:
        """Alpaca's error body: `{"code": <status * 100000>, "message": ...}`."""
        return cls(status=status, json={"code": code if code is not None else status * 100000, "message": message})

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.json is not _NO_JSON:
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.json).encode(), headers
        return self.body or b"", headers


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour; build one with the class methods."""

    kind: FaultKind
    status: int = 500
    message: str = ""
    retry_after: float | str | None = None
    seconds: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = 1) -> Fault:
        return cls("status", status=429, message="rate limit exceeded", retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls("status", status=status, message="internal server error")

    @classmethod
    def http_status(cls, status: int, message: str = "error") -> Fault:
        return cls("status", status=status, message=message)

    @classmethod
    def foreign_status(cls, status: int = 404, body: str = "") -> Fault:
        """A status from something that is not Alpaca (a wrong host, a proxy): no Alpaca JSON error body."""
        return cls("foreign_status", status=status, message=body)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def stall_after(cls, seconds: float) -> Fault:
        return cls("stall_after", seconds=seconds)

    @classmethod
    def malformed_json(cls) -> Fault:
        return cls("malformed_json", status=200)

    @classmethod
    def disconnect(cls) -> Fault:
        return cls("disconnect")


@dataclass
class FaultHandle:
    """A fault scheduled on a path pattern; `remaining` None means forever."""

    pattern: re.Pattern[str]
    method: str
    fault: Fault
    remaining: int | None
    when: Callable[[Request], bool] | None = None
    hits: int = 0

    def matches(self, request: Request) -> bool:
        return (
            self.method in ("*", request.method)
            and self.pattern.fullmatch(request.path) is not None
            and (self.when is None or self.when(request))
        )


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class FakeServer:
    """Real HTTP on 127.0.0.1 (port chosen by the OS) in a background thread; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._routes: list[_Route] = []
        self._faults: list[FaultHandle] = []
        self._requests: list[Request] = []
        self.handler_errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle -----

    def start(self) -> FakeServer:
        if self._httpd is not None:
            return self
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-alpaca", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ----- routes -----

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        with self._lock:
            self._routes.append(_Route(method.upper(), re.compile(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add_route(method, pattern, handler)
            return handler

        return register

    # ----- faults -----

    def fail(
        self,
        pattern: str,
        fault: Fault,
        *,
        times: int | None = 1,
        method: str = "*",
        when: Callable[[Request], bool] | None = None,
    ) -> FaultHandle:
        handle = FaultHandle(re.compile(pattern), method.upper(), fault, times, when)
        with self._lock:
            self._faults.append(handle)
        return handle

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, request: Request) -> Fault | None:
        with self._lock:
            for handle in self._faults:
                if handle.remaining != 0 and handle.matches(request):
                    handle.hits += 1
                    if handle.remaining is not None:
                        handle.remaining -= 1
                    return handle.fault
        return None

    # ----- request log -----

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, pattern: str, method: str | None = None) -> list[Request]:
        compiled = re.compile(pattern)
        return [
            r for r in self.requests if compiled.fullmatch(r.path) and (method is None or r.method == method.upper())
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ----- dispatch (called from handler threads) -----

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops; True when the full time elapsed."""
        return not self._stopping.wait(seconds)

    def _dispatch(self, request: Request) -> Response | None:
        """The response to send, or None to drop the connection."""
        with self._lock:
            self._requests.append(request)
            routes = list(reversed(self._routes))
        fault = self._take_fault(request)
        if fault is not None:
            request.fault = fault.kind
            if fault.kind == "disconnect":
                return None
            if fault.kind == "status":
                response = Response.error(fault.status, fault.message or "error")
                if fault.retry_after is not None:
                    response.headers["Retry-After"] = str(fault.retry_after)
                return response
            if fault.kind == "foreign_status":
                return Response(status=fault.status, body=fault.message.encode(), headers={"Content-Type": "text/html"})
            if fault.kind == "malformed_json":
                return Response(
                    status=200, body=b'{"bars": {"BTC/USD": [{"t": "2024-', headers={"Content-Type": "application/json"}
                )
            if fault.kind == "slow" and not self._sleep(fault.seconds):
                return None
        response = self._route(request, routes)
        if fault is not None and fault.kind == "stall_after" and not self._sleep(fault.seconds):
            return None
        return response

    def _route(self, request: Request, routes: list[_Route]) -> Response:
        for route in routes:
            if route.method not in ("*", request.method):
                continue
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            request.path_params = {k: v for k, v in match.groupdict().items() if v is not None}
            try:
                return route.handler(request)
            except Exception as exc:  # a bug in a fake handler must show up in the test, not hang it
                with self._lock:
                    self.handler_errors.append(exc)
                return Response.error(500, f"fake handler error: {exc!r}\n{traceback.format_exc()}")
        return Response.error(404, f"no fake route for {request.method} {request.path}", code=40410000)


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "FakeAlpaca/1.0"

    def _handle(self) -> None:
        fake: FakeServer = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command.upper(),
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = fake._dispatch(request)
        if response is None:
            request.status = None
            self.close_connection = True
            return
        payload, headers = response.encoded()
        request.status = response.status
        try:
            self.send_response(response.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command.upper() != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired during a slow fault)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr noise


@contextmanager
def running(server: FakeServer) -> Iterator[FakeServer]:
    """`with running(FakeServer()) as server:` for tests that do not use the pytest fixture."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
