"""The forecaster's HTTP app: answers at once, loads the model in the background, runs one forecast at a time.

Why this shape:
- The app is built from a *loader* callable, not a model, so the process can listen immediately:
  `/healthz` says the process is alive while a multi-second torch load runs in a thread, and `/readyz`
  turns 200 only once the model is there (systemd READY=1 and the trader wait on that).
- Forecasts run in a single worker thread. Two requests never fight over the cores (a 2-core box gets
  slower, not faster, with two torch runs at once), every caller still gets the answer of exactly its own
  request and seed (no micro-batching that would mix random streams), and the event loop stays free for
  health checks while torch computes.
- Content checks happen before a request queues, with the service's limits, so a bad or oversized
  request costs nothing and its 422/413 names the series and the problem.
- The bearer token, then the body size, are checked in pure ASGI middleware in front of FastAPI's routing:
  a route's dependencies run only after its body is read and parsed, so a client without the token could
  otherwise make the process buffer a body (and a chunked one declares no length to refuse it by).
- Client text repeated in a 422 or a log line (ids, keys) is clipped, and a 422 lists a bounded number
  of problems, so the answer to a hostile request stays small.
- Requests are counted for /metrics by an ASGI wrapper outside the token and size checks, so their 401s
  and 413s are counted too; /metrics reads counters and the service's state only, so it answers while a
  forecast computes and never waits for the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.routing import Route

from kronos_bot.forecast_types import (
    Forecaster,
    ForecasterUnavailable,
    ForecastInputError,
    SamplingParams,
    SeriesForecast,
    SeriesInput,
)
from kronos_bot.forecaster.metrics import OTHER_ENDPOINT, ForecasterMetrics
from kronos_bot.forecaster.schemas import (
    MAX_ID_LENGTH,
    ErrorCode,
    ErrorResponse,
    ForecastRequest,
    ForecastResponse,
    Problem,
    find_problems,
    series_out,
)
from kronos_bot.logs import get_logger

ModelLoader = Callable[[], Forecaster]
State = Literal["starting", "loading", "ready", "failed"]
# The ASGI callables the middleware below wraps.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
# Every /v1 answer names the loaded model's fingerprint, so a client notices a restart with another model.
MODEL_HEADER = "X-Kronos-Model"
# Keys structlog uses itself; a model_info key with one of these names is logged under "model_<key>".
_RESERVED_LOG_KEYS = frozenset({"event", "level", "ts", "timestamp", "logger"})
# Shape errors listed in one 422 (and its log line); the detail still counts them all.
MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for; over max_request_cells is 413, the rest 422."""

    max_context: int = 512
    min_context_bars: int = 16
    # samples x total bars over all series.
    max_request_cells: int = 4 * 64 * 512
    # Requests waiting behind the running one; more get 503 (the client retries with backoff).
    max_queued: int = 32

    @property
    def max_body_bytes(self) -> int:
        """A generous bound on a JSON body that can pass the cell limit (7 numbers per bar, < 64 bytes each)."""
        return 1_000_000 + self.max_request_cells * 7 * 64


class ApiError(Exception):
    """Raised inside handlers; rendered as an ErrorResponse with this status."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        detail: str,
        problems: Sequence[Problem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.problems = list(problems)
        self.headers = headers


class ForecastService:
    """The model's lifecycle (load in a thread) and its one-at-a-time runner."""

    def __init__(self, loader: ModelLoader, limits: ServiceLimits, log: Any = None) -> None:
        self._loader = loader
        self.limits = limits
        self.log = log or get_logger("kronos_bot.forecaster.service")
        self.created = time.monotonic()
        self.model: Forecaster | None = None
        self.info: dict[str, Any] = {}
        self.fingerprint = ""
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.ready_after_seconds: float | None = None
        self.ready_event = threading.Event()
        self._state: State = "starting"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kronos-forecast")
        self._queued = 0
        self._thread: threading.Thread | None = None
        self.metrics = ForecasterMetrics(queue_depth=lambda: self.waiting, ready=lambda: self._state == "ready")

    @property
    def state(self) -> State:
        return self._state

    @property
    def waiting(self) -> int:
        """Forecasts queued behind the one running (the count limited by max_queued includes that one)."""
        return max(self._queued - 1, 0)

    def start_loading(self) -> None:
        """Load the model in a daemon thread (a SIGTERM during a long load must not wait for it)."""
        if self._thread is not None:
            return
        self._state = "loading"
        self._thread = threading.Thread(target=self._load, name="kronos-model-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        self.log.info("forecaster.model_loading")
        start = time.monotonic()
        try:
            model = self._loader()
            info = dict(model.model_info())
        except BaseException as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            self._state = "failed"
            # A known failure (no checkpoint, hash mismatch) says it all in `error`; a bug keeps its traceback.
            known = isinstance(exc, ForecasterUnavailable)
            self.log.error("forecaster.model_load_failed", error=self.load_error, exc_info=not known)
            return
        self.load_seconds = round(time.monotonic() - start, 3)
        model_max = info.get("max_context")
        if isinstance(model_max, int) and 0 < model_max < self.limits.max_context:
            # The checkpoint was trained on shorter windows; never feed it more than that.
            self.log.warning("forecaster.max_context_capped", configured=self.limits.max_context, model=model_max)
            self.limits = replace(self.limits, max_context=model_max)
        self.model = model
        self.info = info
        public = json.dumps(self.public_info(), sort_keys=True, default=str).encode()
        self.fingerprint = hashlib.sha256(public).hexdigest()[:16]
        try:
            self.metrics.set_model(self.public_info(), self.fingerprint)
        except Exception as exc:  # a metrics label must never keep a loaded model from serving
            self.log.warning("forecaster.metrics_model_info_failed", error=f"{type(exc).__name__}: {exc}")
        self.ready_after_seconds = round(time.monotonic() - self.created, 3)
        self._state = "ready"
        self.ready_event.set()
        fields = {(f"model_{k}" if k in _RESERVED_LOG_KEYS else k): v for k, v in info.items()}
        self.log.info("forecaster.model_loaded", load_seconds=self.load_seconds, **fields)

    def label(self) -> str:
        """A short name of the loaded model for status lines ("NeoQuasar/Kronos-small@901c26c")."""
        model = self.info.get("model")
        if isinstance(model, dict):
            source, revision = model.get("source"), model.get("revision")
            return f"{source}@{str(revision)[:7]}" if revision else str(source)
        return str(model) if model else "model"

    def public_info(self) -> dict[str, Any]:
        """model_info() plus the limits this service enforces (what a client needs to build requests).

        Deterministic for a given model and config (no timings), so callers may hash it into cache keys.
        """
        info = dict(self.info)
        if info.get("max_context") not in (None, self.limits.max_context):
            info["model_max_context"] = info["max_context"]
        info.update(
            max_context=self.limits.max_context,
            min_context_bars=self.limits.min_context_bars,
            max_request_cells=self.limits.max_request_cells,
        )
        return info

    def check(self, request: ForecastRequest) -> None:
        """413 over the size limit, 422 for any series the model would refuse; nothing queued yet."""
        cells = request.cells()
        if cells > self.limits.max_request_cells:
            raise ApiError(
                413,
                "too_large",
                f"request too large: {request.samples} samples x "
                f"{sum(len(s.timestamps) for s in request.series)} bars = {cells} cells "
                f"> max_request_cells {self.limits.max_request_cells}; split the batch or use fewer samples",
            )
        max_context = min(request.max_context or self.limits.max_context, self.limits.max_context)
        problems = [
            Problem(series=p.series, problem=p.problem)
            for p in find_problems(request.series, min_bars=self.limits.min_context_bars, max_bars=max_context)
        ]
        if request.pred_len > max_context:
            problems.append(Problem(problem=f"pred_len {request.pred_len} > max_context {max_context}"))
        if problems:
            raise ApiError(422, "invalid_input", _summary(problems), problems)

    async def forecast(self, request: ForecastRequest) -> ForecastResponse:
        model = self.model
        if model is None:
            raise ApiError(503, "not_ready", f"model not loaded ({self.state})", headers={"Retry-After": "2"})
        self.check(request)
        if self._queued >= self.limits.max_queued:
            raise ApiError(503, "not_ready", "busy: too many queued forecasts", headers={"Retry-After": "1"})
        inputs, params = request.to_inputs(self.limits.max_context)
        submitted = time.monotonic()
        self._queued += 1
        try:
            loop = asyncio.get_running_loop()
            forecasts, queue_s, compute_s = await loop.run_in_executor(
                self._executor, _run, model, inputs, params, submitted
            )
        except ForecastInputError as exc:
            problem = Problem(series=exc.series_id, problem=exc.problem)
            raise ApiError(422, "invalid_input", str(exc), [problem]) from exc
        finally:
            self._queued -= 1
        self.metrics.observe_forecast(compute_s)
        return ForecastResponse(
            series=[series_out(f, compute_s) for f in forecasts],
            compute_seconds=round(compute_s, 6),
            queue_seconds=round(queue_s, 6),
        )

    def close(self) -> None:
        """Stop taking work; a run in progress finishes in its thread (torch cannot be interrupted)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _run(
    model: Forecaster, inputs: list[SeriesInput], params: SamplingParams, submitted: float
) -> tuple[list[SeriesForecast], float, float]:
    start = time.monotonic()
    forecasts = model.forecast(inputs, params)
    return forecasts, start - submitted, time.monotonic() - start


def _summary(problems: Sequence[Problem]) -> str:
    first = problems[0]
    text = f"series {first.series!r}: {first.problem}" if first.series is not None else first.problem
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return text


def _error_response(exc: ApiError) -> JSONResponse:
    body = ErrorResponse(error=exc.code, detail=exc.detail, problems=exc.problems)
    return JSONResponse(body.model_dump(mode="json"), status_code=exc.status, headers=exc.headers)


def _clip(text: str) -> str:
    """Client text as an answer or a log line may repeat it: at most MAX_ID_LENGTH chars, "…" marking a cut."""
    return text if len(text) <= MAX_ID_LENGTH else text[: MAX_ID_LENGTH - 1] + "…"


def _series_label(body: Any, index: int) -> str:
    """The id the client gave series `index` (clipped), or "#<index>" when it gave no scalar id.

    Only scalars are shown: str() of a hostile list or object would cost as much as its size to build.
    """
    try:
        raw_id = body["series"][index]["id"]
    except (TypeError, KeyError, IndexError):
        raw_id = None
    return _clip(str(raw_id)) if isinstance(raw_id, str | int | float) else f"#{index}"


def _validation_problems(exc: RequestValidationError) -> list[Problem]:
    """Shape errors (types, missing keys, naive timestamps) as Problems naming the series when possible.

    Every location part is clipped too: for an unknown key (extra="forbid") pydantic's location *is* the
    client's key, so an id sent as a key would otherwise come back whole, in the detail and in the problem.
    """
    body = getattr(exc, "body", None)
    problems: list[Problem] = []
    for err in exc.errors():
        loc = [part for part in err.get("loc", ()) if part != "body"]
        message = str(err.get("msg", "invalid"))
        series_id: str | None = None
        if len(loc) >= 2 and loc[0] == "series" and isinstance(loc[1], int):
            series_id = _series_label(body, loc[1])
            where = loc[2:]
        else:
            where = loc
        field = "".join(
            f"[{p}]" if isinstance(p, int) else (f".{_clip(str(p))}" if i else _clip(str(p)))
            for i, p in enumerate(where)
        )
        problems.append(Problem(series=series_id, problem=f"{field}: {message}" if field else message))
    return problems


def _needs_token(path: str) -> bool:
    """The /v1 API and /metrics need the token; /healthz and /readyz stay open for probes and the trader's wait.

    /metrics is closed like the API because it tells which model runs and how busy the service is.
    """
    return path == "/v1" or path.startswith("/v1/") or path == "/metrics"


def _bearer(scope: Scope) -> tuple[bytes, bytes]:
    """(scheme, credentials) of the request's Authorization header; empty bytes when it has none."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = bytes(value).partition(b" ")
            return scheme, credentials.strip()
    return b"", b""


class BearerAuth:
    """Pure ASGI middleware: 401 for a /v1 request without the right bearer token, before any body byte is read.

    Not a FastAPI dependency on purpose: those run only once the body is read and parsed, and a 200 MB
    chunked body from a client without the token took the process from 0.4 to 1.0 GB before its 401.
    """

    def __init__(self, app: Any, secret: bytes, log: Any) -> None:
        self.app = app
        self.secret = secret
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _needs_token(scope["path"]):
            scheme, credentials = _bearer(scope)
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials, self.secret):
                self.log.warning("forecaster.unauthorized", path=scope["path"], has_header=bool(scheme))
                error = ApiError(
                    401, "unauthorized", "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
                )
                await _error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _too_large(max_bytes: int) -> JSONResponse:
    return _error_response(ApiError(413, "too_large", f"request body over {max_bytes} bytes"))


class _CountedBody:
    """One request's receive/send for the app: counts the body bytes and answers 413 when they pass the limit.

    After the 413 the app is told the client is gone (http.disconnect), so it stops reading, and whatever
    it answers to that is dropped: the client already has its one answer. When the app had started its own
    answer, no 413 is sent (a response cannot be replaced), the app just reads no further.
    """

    def __init__(self, max_bytes: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.max_bytes = max_bytes
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.over_limit = False
        self.app_answering = False
        self.refused = False

    async def receive(self) -> Any:
        if self.over_limit:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                self.over_limit = True
                if not self.app_answering:
                    self.refused = True
                    await _too_large(self.max_bytes)(self.scope, self._receive, self._send)
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Any) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.app_answering = True
        await self._send(message)


class BodySizeLimit:
    """Pure ASGI middleware: 413 as soon as a request body passes the limit, its length declared or not.

    A declared Content-Length over the limit is refused before any byte is read; any other body (chunked
    bodies declare nothing) is counted as the app reads it, and the rest is never read, so never buffered.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _too_large(self.max_bytes)(scope, receive, send)
                return
        body = _CountedBody(self.max_bytes, scope, receive, send)
        await self.app(scope, body.receive, body.send)


class RequestMetrics:
    """Pure ASGI middleware, outermost: counts every answered request by route path and status.

    Outside BearerAuth and BodySizeLimit so their 401s and 413s are counted too (a FastAPI middleware or
    dependency would only see the requests they let through). The path is labelled only when it is one of
    `endpoints` (the app's routes, all static), else "other", so a scan of random paths adds no series.
    """

    def __init__(self, app: Any, metrics: ForecasterMetrics, endpoints: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def counted(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            # Starlette's outermost error middleware answers 500 after this wrapper has seen the exception.
            status = status or 500
            raise
        finally:
            if status is not None:
                path = scope["path"]
                self.metrics.count_request(path if path in self.endpoints else OTHER_ENDPOINT, status)


def create_app(
    loader: ModelLoader,
    *,
    limits: ServiceLimits | None = None,
    token: str | None = None,
    log: Any = None,
    api_docs: bool = False,
) -> FastAPI:
    """The forecaster app; the model loads (in a thread) when the app starts, not when it is created.

    `token`: when set, every /v1 endpoint and /metrics need `Authorization: Bearer <token>` (401 otherwise);
    /healthz and /readyz stay open so probes and the trader's start-up wait need no secret.
    `api_docs`: serve /docs and /openapi.json; off by default, as production needs no map of the API
    for whoever can connect.
    """
    service = ForecastService(loader, limits or ServiceLimits(), log)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="kronos-bot forecaster",
        version="1",
        lifespan=lifespan,
        openapi_url="/openapi.json" if api_docs else None,
        docs_url="/docs" if api_docs else None,
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=service.limits.max_body_bytes)
    if token:
        # Added last, so it runs first: a client without the token gets 401, never a hint about sizes.
        app.add_middleware(BearerAuth, secret=token.encode("utf-8"), log=service.log)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _validation_problems(exc)
        listed = problems[:MAX_LISTED_PROBLEMS]
        service.log.warning("forecast.rejected", status=422, problems=[p.model_dump() for p in listed])
        return _error_response(ApiError(422, "invalid_input", _summary(problems), listed))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """The process is alive and its event loop answers (whatever the model's state)."""
        return {
            "status": "alive",
            "state": service.state,
            "uptime_seconds": round(time.monotonic() - service.created, 3),
            "load_seconds": service.load_seconds,
            "ready_after_seconds": service.ready_after_seconds,
        }

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """200 once the model is loaded; 503 while loading or after a failed load."""
        body: dict[str, Any] = {"status": service.state}
        if service.state == "ready":
            body["ready_after_seconds"] = service.ready_after_seconds
            return JSONResponse(body)
        if service.load_error:
            body["error"] = service.load_error
        return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})

    @app.get("/v1/model")
    async def model_info() -> JSONResponse:
        if service.state != "ready":
            raise ApiError(503, "not_ready", f"model not loaded ({service.state})", headers={"Retry-After": "2"})
        return JSONResponse(jsonable_encoder(service.public_info()), headers={MODEL_HEADER: service.fingerprint})

    @app.post("/v1/forecast", response_model=ForecastResponse)
    async def forecast(request: ForecastRequest, http_response: Response) -> ForecastResponse:
        try:
            response = await service.forecast(request)
        except ApiError as exc:
            if exc.status in (413, 422):
                service.log.warning(
                    "forecast.rejected",
                    status=exc.status,
                    detail=exc.detail,
                    problems=[p.model_dump() for p in exc.problems[:10]],
                )
            raise
        except Exception as exc:
            service.log.error("forecast.failed", error=f"{type(exc).__name__}: {exc}", exc_info=True)
            raise ApiError(500, "internal", f"forecast failed: {type(exc).__name__}: {exc}") from exc
        service.log.info(
            "forecast.served",
            series=[s.id for s in request.series][:16],
            n_series=len(request.series),
            samples=request.samples,
            pred_len=request.pred_len,
            queue_seconds=response.queue_seconds,
            compute_seconds=response.compute_seconds,
        )
        http_response.headers[MODEL_HEADER] = service.fingerprint
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus exposition; counters and state only, on the event loop, so never behind a forecast."""
        body, content_type = service.metrics.render(request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    # Added after the routes (it labels requests by their paths) and last, so it wraps the token and size checks.
    endpoints = frozenset(route.path for route in app.routes if isinstance(route, Route))
    app.add_middleware(RequestMetrics, metrics=service.metrics, endpoints=endpoints)
    return app


def limits_from_settings(forecaster_settings: Any) -> ServiceLimits:
    """ServiceLimits from the `forecaster` config section."""
    return ServiceLimits(
        max_context=forecaster_settings.max_context,
        min_context_bars=forecaster_settings.min_context_bars,
        max_request_cells=forecaster_settings.max_request_cells,
        max_queued=forecaster_settings.max_queued_requests,
    )


__all__ = [
    "ApiError",
    "ForecastService",
    "ModelLoader",
    "RequestMetrics",
    "ServiceLimits",
    "create_app",
    "limits_from_settings",
]
