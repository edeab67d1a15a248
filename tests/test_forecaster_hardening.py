"""Attack-test regressions of the forecaster (issue #12): token before body, streamed size limit, short ids, no docs.

Real HTTP through a BackgroundServer. Raw sockets where a test must control *when* body bytes are sent:
httpx writes a whole body before it reads the answer, so it cannot show that the server answered early.
A `BodyMeter` between uvicorn and the app records every body chunk the app pulled with receive(), which
is what proves a body was (not) read.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import select
import socket
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from kronos_bot.commands import forecaster as forecaster_command
from kronos_bot.forecast_types import SamplingParams, SeriesInput
from kronos_bot.forecaster import server as server_module
from kronos_bot.forecaster.schemas import ErrorResponse, request_payload
from kronos_bot.forecaster.server import BackgroundServer, Endpoint
from kronos_bot.forecaster.service import BodySizeLimit, ServiceLimits, create_app
from kronos_bot.systemd import Notifier
from tests.forecaster_support import (
    TOKEN,
    http_client,
    make_series,
    short_socket_path,
    tiny_model,
    tiny_settings,
)

LIMITS = ServiceLimits(max_context=512, min_context_bars=16, max_request_cells=4 * 64 * 512)
# The smallest byte limit the service derives (one cell): about 1 MB.
SMALL = replace(LIMITS, max_request_cells=1)
CHUNK = 64 * 1024
HOSTILE = "Z" * 100_000


class BodyMeter:
    """The app as uvicorn sees it, recording the size of every body message the app pulls with receive()."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state  # BackgroundServer finds the service there
        self.chunks: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def metered() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.chunks.append(len(message.get("body", b"")))
            return message

        await self.app(scope, metered, send)


@contextmanager
def serving(
    *, unix: bool = False, limits: ServiceLimits = LIMITS, token: str | None = None, **app_options: Any
) -> Iterator[tuple[BackgroundServer, BodyMeter]]:
    meter = BodyMeter(create_app(tiny_model, limits=limits, token=token, **app_options))
    where: dict[str, Any] = {"socket_path": short_socket_path()} if unix else {"host": "127.0.0.1"}
    with BackgroundServer(meter, **where) as server:  # type: ignore[arg-type]
        server.wait_ready(60)
        yield server, meter


def body_for(series: list[SeriesInput]) -> dict[str, Any]:
    return request_payload(series, SamplingParams(seed=1))


# ----- raw HTTP/1.1 -----


def open_socket(endpoint: Endpoint) -> socket.socket:
    if endpoint.socket_path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(endpoint.socket_path)
    else:
        sock = socket.create_connection((endpoint.host or "127.0.0.1", endpoint.port or 0))
    sock.settimeout(10)
    return sock


def post_head(token: str | None, **headers: str) -> bytes:
    lines = ["POST /v1/forecast HTTP/1.1", "Host: forecaster", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(size: int) -> bytes:
    """One chunk of a chunked body (spaces: the start of a JSON document that never ends)."""
    return b"%x\r\n%s\r\n" % (size, b" " * size)


def answered(sock: socket.socket, timeout: float) -> bool:
    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            raise ConnectionError(f"closed before the end of the answer's head: {data!r}")
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return int(status_line.split()[1]), headers, body[:length]


@dataclass(frozen=True)
class Upload:
    status: int
    body: bytes
    sent: int  # body bytes the client had written when the answer came
    finished: bool  # the client wrote the whole body before any answer came


def upload_chunked(endpoint: Endpoint, token: str | None, total: int, wait: float) -> Upload:
    """POST `total` bytes chunked, CHUNK at a time, waiting up to `wait` s for an answer after each chunk."""
    with open_socket(endpoint) as sock:
        sock.sendall(post_head(token, Transfer_Encoding="chunked"))
        sent = 0
        while sent < total:
            sock.sendall(chunk(CHUNK))
            sent += CHUNK
            if answered(sock, wait):
                status, _, body = read_answer(sock)
                return Upload(status, body, sent, finished=False)
        sock.sendall(b"0\r\n\r\n")
        status, _, body = read_answer(sock)
        return Upload(status, body, sent, finished=True)


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


# ----- the token is checked before the body is read -----


def test_no_token_is_401_before_any_of_a_chunked_body_is_read() -> None:
    with serving(token=TOKEN) as (server, meter), capture_logs() as logs:
        with open_socket(server.endpoint) as sock:
            sock.sendall(post_head(None, Transfer_Encoding="chunked"))
            sock.sendall(chunk(CHUNK))  # the first 64 kB of a body that never ends
            assert answered(sock, 5.0), "no answer while the body was still coming: the server waits for it"
            status, headers, body = read_answer(sock)
            for _ in range(32):  # 2 MB more after the answer: dropped by the server, never handed to the app
                sock.sendall(chunk(CHUNK))
        with http_client(server.endpoint) as http:
            assert http.get("/healthz").status_code == 200
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert ErrorResponse.model_validate_json(body).error == "unauthorized"
    assert meter.chunks == []
    [event] = events(logs, "forecaster.unauthorized")
    assert (event["log_level"], event["path"], event["has_header"]) == ("warning", "/v1/forecast", False)


def test_streaming_client_with_a_wrong_token_gets_its_401_and_nothing_is_read() -> None:
    def endless() -> Iterator[bytes]:
        for _ in range(32):
            yield b" " * CHUNK

    with (
        serving(unix=True, token=TOKEN) as (server, meter),
        capture_logs() as logs,
        http_client(server.endpoint, token="wrong-token") as http,
    ):
        response = http.post("/v1/forecast", content=endless(), headers={"Content-Type": "application/json"})
        model = http.get("/v1/model")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"error": "unauthorized", "detail": "missing or wrong bearer token", "problems": []}
    assert model.status_code == 401
    assert meter.chunks == []
    assert [e["has_header"] for e in events(logs, "forecaster.unauthorized")] == [True, True]


def test_declared_length_over_the_limit_is_401_without_the_token_and_413_with_it() -> None:
    limit = SMALL.max_body_bytes
    answers = {}
    with serving(limits=SMALL, token=TOKEN) as (server, meter):
        for token in (None, TOKEN):
            with open_socket(server.endpoint) as sock:
                sock.sendall(post_head(token, Content_Length=str(limit + 1)))  # head only, no body byte
                assert answered(sock, 5.0)
                status, _, body = read_answer(sock)
            answers[token] = (status, ErrorResponse.model_validate_json(body).error)
    assert answers == {None: (401, "unauthorized"), TOKEN: (413, "too_large")}
    assert meter.chunks == []


# ----- the size limit counts the bytes that arrive -----


@pytest.mark.parametrize("unix", [True, False], ids=["unix", "tcp"])
def test_chunked_body_over_the_limit_is_413_as_soon_as_it_crosses(unix: bool) -> None:
    limit = SMALL.max_body_bytes
    with serving(unix=unix, limits=SMALL, token=TOKEN) as (server, meter):
        upload = upload_chunked(server.endpoint, TOKEN, total=8 * limit, wait=0.02)
    assert upload.status == 413
    assert ErrorResponse.model_validate_json(upload.body).error == "too_large"
    assert not upload.finished and upload.sent < 8 * limit
    # The app read up to the chunk that crossed the limit, and nothing after it.
    assert sum(meter.chunks[:-1]) <= limit < sum(meter.chunks)


def test_chunked_body_under_the_limit_is_served() -> None:
    payload = json.dumps(body_for([make_series()])).encode()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    with serving(unix=True, token=TOKEN) as (server, meter), http_client(server.endpoint, token=TOKEN) as http:
        response = http.post("/v1/forecast", content=pieces(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["series"][0]["id"] == "BTC/USD"
    assert sum(meter.chunks) == len(payload)


def test_limit_sends_no_second_answer_when_the_app_already_answers() -> None:
    """An app that starts its response, then reads a body over the limit, keeps its own (only) answer."""
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3)
    disconnect = {"type": "http.disconnect"}

    async def app(_scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive())["type"] == "http.request":
            pass
        await send({"type": "http.response.body", "body": b"done"})

    async def receive() -> dict[str, Any]:
        return next(incoming, disconnect)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/forecast", "headers": []}
    asyncio.run(BodySizeLimit(app, max_bytes=1000)(scope, receive, send))
    assert [(m["type"], m.get("status"), m.get("body")) for m in sent] == [
        ("http.response.start", 200, None),
        ("http.response.body", None, b"done"),
    ]


# ----- series ids -----


def test_hostile_ids_and_keys_are_refused_without_being_echoed() -> None:
    as_id = body_for([make_series()])
    as_id["series"][0]["id"] = HOSTILE
    # What echoed 100 kB whole before: a key is part of pydantic's error location, and that was not bounded.
    as_series_key = copy.deepcopy(as_id)
    as_series_key["series"][0] = {**body_for([make_series()])["series"][0], HOSTILE: 1}
    as_top_key = {**body_for([make_series()]), HOSTILE: 1}
    with serving(unix=True) as (server, _meter), capture_logs() as logs, http_client(server.endpoint) as http:
        answers = [http.post("/v1/forecast", json=body) for body in (as_id, as_series_key, as_top_key)]
    assert [(a.status_code, a.json()["error"]) for a in answers] == [(422, "invalid_input")] * 3
    assert [len(a.content) < 2000 and "Z" * 1000 not in a.text for a in answers] == [True] * 3
    assert not any("Z" * 65 in a.text for a in answers)
    clipped = answers[0].json()["problems"][0]
    assert clipped["series"].startswith("ZZZ") and clipped["series"].endswith("…")
    assert "at most 64 characters" in clipped["problem"]
    rejected = events(logs, "forecast.rejected")
    assert len(rejected) == 3
    assert all("Z" * 65 not in json.dumps(event, default=str) for event in rejected)


def test_ids_of_64_characters_are_served_and_65_refused() -> None:
    with serving(unix=True) as (server, _meter), http_client(server.endpoint) as http:
        longest = http.post("/v1/forecast", json=body_for([make_series("A" * 64)]))
        too_long = http.post("/v1/forecast", json=body_for([make_series("B" * 65)]))
    assert longest.status_code == 200 and longest.json()["series"][0]["id"] == "A" * 64
    assert too_long.status_code == 422 and too_long.json()["error"] == "invalid_input"
    assert "at most 64 characters" in too_long.json()["problems"][0]["problem"]


def test_many_shape_errors_give_a_small_422_that_counts_them() -> None:
    body = body_for([make_series()])
    body["series"][0]["close"] = ["x"] * 5000
    body["series"][0]["high"] = ["x"] * 5000
    with serving(unix=True) as (server, _meter), http_client(server.endpoint) as http:
        answer = http.post("/v1/forecast", json=body)
    assert answer.status_code == 422
    assert len(answer.content) < 4000
    assert "(and 9999 more problems)" in answer.json()["detail"]


# ----- API docs -----


def test_api_docs_are_off_by_default_and_on_when_enabled() -> None:
    paths = ("/openapi.json", "/docs", "/redoc")
    with serving(unix=True) as (server, _meter), http_client(server.endpoint) as http:
        off = [http.get(path).status_code for path in paths]
    with serving(unix=True, api_docs=True) as (server, _meter), http_client(server.endpoint) as http:
        on = [http.get(path).status_code for path in paths]
        schema = http.get("/openapi.json").json()
    assert off == [404, 404, 404]
    assert on == [200, 200, 404]
    assert "/v1/forecast" in schema["paths"]


def test_run_passes_api_docs_to_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    options: dict[str, Any] = {}
    real_create_app = server_module.create_app

    def recording_create_app(loader: Any, **kwargs: Any) -> FastAPI:
        options.update(kwargs)
        return real_create_app(loader, **kwargs)

    async def no_serving(_self: Any) -> int:
        return 0

    monkeypatch.setattr(server_module, "create_app", recording_create_app)
    monkeypatch.setattr(server_module.ForecasterServer, "serve", no_serving)
    assert server_module.run(tiny_model, host="127.0.0.1", port=0, api_docs=True, notifier=Notifier(environ={})) == 0
    assert options["api_docs"] is True


@pytest.mark.parametrize("api_docs", [False, True])
def test_forecaster_command_passes_the_api_docs_setting(monkeypatch: pytest.MonkeyPatch, api_docs: bool) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run(_loader: Any, **kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    monkeypatch.setattr(server_module, "run", fake_run)
    args = argparse.Namespace(
        socket=short_socket_path(),
        host=None,
        port=None,
        model=None,
        tokenizer=None,
        no_verify=True,
        device=None,
        threads=None,
    )
    assert forecaster_command.main(args, tiny_settings(api_docs=api_docs)) == 0
    assert calls[0]["api_docs"] is api_docs
