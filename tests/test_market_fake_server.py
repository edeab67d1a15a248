"""The fake server's own contract (other test modules build trading endpoints on it), and torch-freedom."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.fakealpaca import FakeAlpaca, FakeServer, Fault, Request, Response


@pytest.fixture
def server() -> FakeServer:
    with FakeServer() as srv:
        yield srv


def test_routes_path_params_query_json_and_log(server: FakeServer) -> None:
    @server.route("POST", r"/v2/orders/(?P<order_id>[^/]+)")
    def echo(request: Request) -> Response:
        return Response(
            status=201,
            json={
                "id": request.path_params["order_id"],
                "body": request.json,
                "qty": request.arg("qty"),
                "missing": request.arg("nope", "d"),
            },
            headers={"X-Test": "1"},
        )

    r = httpx.post(f"{server.base_url}/v2/orders/abc?qty=2", json={"side": "buy"}, headers={"APCA-API-KEY-ID": "k"})
    assert r.status_code == 201 and r.headers["x-test"] == "1"
    assert r.json() == {"id": "abc", "body": {"side": "buy"}, "qty": "2", "missing": "d"}
    [logged] = server.requests_to(r"/v2/orders/.*", method="POST")
    assert logged.status == 201 and logged.headers["apca-api-key-id"] == "k" and logged.fault is None
    assert server.requests_to(r"/v2/orders/.*", method="GET") == []
    server.clear_requests()
    assert server.requests == []


def test_later_route_overrides_and_unknown_path_is_404(server: FakeServer) -> None:
    server.add_route("GET", r"/v2/account", lambda r: Response(json={"n": 1}))
    server.add_route("GET", r"/v2/account", lambda r: Response(json={"n": 2}))
    assert httpx.get(f"{server.base_url}/v2/account").json() == {"n": 2}
    missing = httpx.get(f"{server.base_url}/v2/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == 40410000
    assert httpx.post(f"{server.base_url}/v2/account").status_code == 404  # method matters


def test_handler_exception_becomes_500_and_is_recorded(server: FakeServer) -> None:
    def broken(request: Request) -> Response:
        raise KeyError("boom")

    server.add_route("GET", r"/broken", broken)
    r = httpx.get(f"{server.base_url}/broken")
    assert r.status_code == 500 and "boom" in r.json()["message"]
    assert len(server.handler_errors) == 1
    server.handler_errors.clear()


def test_faults_times_method_and_predicate(server: FakeServer) -> None:
    server.add_route("*", r"/x", lambda r: Response(json={"ok": True}))
    limited = server.fail(r"/x", Fault.rate_limited(retry_after=3), times=2, method="GET")
    statuses = [httpx.get(f"{server.base_url}/x") for _ in range(3)]
    assert [s.status_code for s in statuses] == [429, 429, 200]
    assert statuses[0].headers["retry-after"] == "3" and limited.hits == 2
    assert httpx.post(f"{server.base_url}/x").status_code == 200

    server.fail(r"/x", Fault.server_error(503), times=None, when=lambda r: r.arg("page") == "2")
    assert httpx.get(f"{server.base_url}/x?page=1").status_code == 200
    assert httpx.get(f"{server.base_url}/x?page=2").status_code == 503
    assert httpx.get(f"{server.base_url}/x?page=2").status_code == 503
    server.clear_faults()
    assert httpx.get(f"{server.base_url}/x?page=2").status_code == 200

    server.fail(r"/x", Fault.malformed_json())
    with pytest.raises(ValueError):
        httpx.get(f"{server.base_url}/x").json()
    server.fail(r"/x", Fault.disconnect())
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/x")
    server.fail(r"/x", Fault.slow(2.0))
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.base_url}/x", timeout=0.2)
    assert [r.fault for r in server.requests[-3:]] == ["malformed_json", "disconnect", "slow"]


def test_stop_does_not_wait_for_slow_responses() -> None:
    import time

    srv = FakeServer().start()
    srv.add_route("GET", r"/slow", lambda r: Response(json={}))
    srv.fail(r"/slow", Fault.slow(30.0))
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{srv.base_url}/slow", timeout=0.2)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2.0


def test_fake_alpaca_serves_market_routes(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.market.set_latest_quote("BTC/USD", bid=99.0, ask=101.0)
    r = httpx.get(f"{fake_alpaca.base_url}/v1beta3/crypto/us/latest/quotes", params={"symbols": "BTC/USD,ETH/USD"})
    assert set(r.json()["quotes"]) == {"BTC/USD"}
    # alpaca-py parses the fake's quote shape
    from alpaca.data.historical.crypto import CryptoHistoricalDataClient
    from alpaca.data.requests import CryptoLatestQuoteRequest

    client = CryptoHistoricalDataClient(url_override=fake_alpaca.base_url)
    quote = client.get_crypto_latest_quote(CryptoLatestQuoteRequest(symbol_or_symbols=["BTC/USD"]))["BTC/USD"]
    assert quote.bid_price == 99.0 and quote.ask_price == 101.0
    unauth = httpx.get(f"{fake_alpaca.base_url}/v1beta1/news")
    assert unauth.status_code == 401


def test_trader_side_imports_stay_torch_free() -> None:
    code = "import sys, kronos_bot.market, kronos_bot.gates; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)
