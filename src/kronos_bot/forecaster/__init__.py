"""The forecaster: Kronos served over HTTP by one process, and the client every other process uses.

Importing this package imports nothing heavy: the names below load their module on first use, so
`from kronos_bot.forecaster import make_forecaster` pulls in httpx and pydantic only, never torch or
FastAPI. Modules:

- `schemas`  wire format (pydantic) + content checks, shared by service and client;
- `client`   `ForecasterClient`, the torch-free Forecaster over a Unix socket or URL;
- `factory`  `make_forecaster(settings, log)`: service client, in-process model, or auto;
- `service`  the FastAPI app (`create_app(loader)`), one model run at a time;
- `metrics`  its Prometheus `/metrics` (requests, latency, queue, rejections, model info);
- `server`   sockets, uvicorn, systemd notifications (`kronos_bot.systemd`), signals (`run`, `BackgroundServer`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kronos_bot.forecaster.client import ForecasterAuthError, ForecasterClient, ForecasterRequestError
    from kronos_bot.forecaster.factory import load_inprocess, make_forecaster

_LAZY = {
    "ForecasterClient": "kronos_bot.forecaster.client",
    "ForecasterAuthError": "kronos_bot.forecaster.client",
    "ForecasterRequestError": "kronos_bot.forecaster.client",
    "make_forecaster": "kronos_bot.forecaster.factory",
    "load_inprocess": "kronos_bot.forecaster.factory",
}

__all__ = ["ForecasterAuthError", "ForecasterClient", "ForecasterRequestError", "load_inprocess", "make_forecaster"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kronos_bot.forecaster' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
