"""The simulated broker: fills with slippage, fees in the received asset, persistence, stop_limits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from kronos_bot.broker.base import (
    AssetInfo,
    Broker,
    BrokerUnavailable,
    OrderRejected,
    OrderSkipped,
    OrderStatus,
)
from kronos_bot.broker.factory import make_broker
from kronos_bot.broker.sim import SimBroker
from kronos_bot.config import Settings, SimBrokerSettings
from kronos_bot.trader.journal import Journal

D = Decimal
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


class Prices:
    def __init__(self, **prices: str) -> None:
        self.prices = {k.replace("_", "/"): D(v) for k, v in prices.items()}

    def __call__(self, symbol: str) -> Decimal | None:
        return self.prices.get(symbol)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "j.sqlite")
    yield j
    j.close()


def sim(journal: Journal, prices: Prices, **kw: object) -> SimBroker:
    cfg = SimBrokerSettings(starting_cash=1000, fee_percent=0.25, slippage_bps=10)
    return SimBroker(journal, cfg, prices, clock=lambda: T0, **kw)  # type: ignore[arg-type]


def test_is_a_broker(journal: Journal) -> None:
    assert isinstance(sim(journal, Prices()), Broker)


def test_default_broker_without_keys_is_sim(journal: Journal) -> None:
    assert make_broker(Settings(), journal, Prices()).name == "sim"


def test_buy_fee_in_coin_and_slippage(journal: Journal) -> None:
    b = sim(journal, Prices(BTC_USD="50000"))
    order = b.buy_notional("BTC/USD", D("100"), "c1")
    price = D("50000") * D("1.001")  # 10 bps adverse
    assert order.status is OrderStatus.FILLED and order.filled_avg_price == price
    filled = order.filled_qty
    assert filled == (D(100) / price).quantize(D("0.000000001"), rounding="ROUND_DOWN")
    pos = b.get_position("BTC/USD")
    assert pos is not None
    assert pos.qty == (filled * D("0.9975")).quantize(D("0.000000001"), rounding="ROUND_DOWN")
    assert order.fee == filled - pos.qty and order.fee_asset == "BTC"
    acct = b.get_account()
    assert acct.cash == D(900) and acct.buying_power == D(900)


def test_sell_fee_in_usd(journal: Journal) -> None:
    prices = Prices(ETH_USD="2000")
    b = sim(journal, prices)
    b.buy_notional("ETH/USD", D("200"), "c1")
    held = b.get_position("ETH/USD").qty
    prices.prices["ETH/USD"] = D("2200")
    sell = b.sell_qty("ETH/USD", held, "c2")
    px = D("2200") * D("0.999")
    assert sell.filled_avg_price == px and sell.fee_asset == "USD"
    assert sell.fee == held * px * D("0.0025")
    assert b.get_position("ETH/USD") is None
    assert b.get_account().cash == D(800) + held * px * D("0.9975")


def test_idempotent_per_client_order_id(journal: Journal) -> None:
    b = sim(journal, Prices(BTC_USD="50000"))
    first = b.buy_notional("BTC/USD", D("100"), "same")
    second = b.buy_notional("BTC/USD", D("100"), "same")
    assert first.order_id == second.order_id
    assert b.get_account().cash == D(900)


def test_insufficient_balance_rejected(journal: Journal) -> None:
    b = sim(journal, Prices(BTC_USD="50000"))
    with pytest.raises(OrderRejected) as err:
        b.buy_notional("BTC/USD", D("5000"), "big")
    assert err.value.status_code == 403
    with pytest.raises(OrderRejected):
        b.sell_qty("BTC/USD", D("1"), "nothing-held")


def test_min_sizes_and_rounding(journal: Journal) -> None:
    assets = {
        "BTC/USD": AssetInfo(
            "BTC/USD", min_order_size=D("0.0001"), min_trade_increment=D("0.0001"), price_increment=D("1")
        )
    }
    b = sim(journal, Prices(BTC_USD="50000"), assets=assets, min_notional=D("10"))
    with pytest.raises(OrderSkipped) as err:
        b.buy_notional("BTC/USD", D("9.99"), "tiny")
    assert err.value.reason == "below_min_notional"
    with pytest.raises(OrderSkipped) as err:
        b.buy_notional("BTC/USD", D("4.99"), "tiny2")
    b.buy_notional("BTC/USD", D("100"), "ok")
    held = b.get_position("BTC/USD").qty
    sell = b.sell_qty("BTC/USD", held, "sell")
    assert sell.filled_qty == D("0.0019")  # 0.00199... rounded DOWN to the 0.0001 increment
    with pytest.raises(OrderSkipped) as err:
        b.sell_qty("BTC/USD", b.get_position("BTC/USD").qty, "dust")
    assert err.value.reason == "zero_qty"


def test_no_price_is_unavailable(journal: Journal) -> None:
    with pytest.raises(BrokerUnavailable):
        sim(journal, Prices()).buy_notional("BTC/USD", D(100), "c")


def test_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    b = sim(j, Prices(BTC_USD="50000"))
    b.buy_notional("BTC/USD", D("250"), "c1")
    qty = b.get_position("BTC/USD").qty
    j.close()
    j2 = Journal(path)
    b2 = sim(j2, Prices(BTC_USD="50000"))
    assert b2.get_account().cash == D(750)
    assert b2.get_position("BTC/USD").qty == qty
    assert b2.get_order_by_client_id("c1") is not None
    j2.close()


def test_stop_limit_holds_qty_triggers_and_cancel(journal: Journal) -> None:
    prices = Prices(SOL_USD="100")
    b = sim(journal, prices)
    b.buy_notional("SOL/USD", D("100"), "c1")
    held = b.get_position("SOL/USD").qty
    stop = b.place_stop_limit_sell("SOL/USD", held, D("95"), D("94"), "s1")
    assert stop.status is OrderStatus.OPEN and b.get_position("SOL/USD").qty_available == 0
    with pytest.raises(OrderRejected):  # like Alpaca: the open stop holds the coins
        b.sell_qty("SOL/USD", held, "c2")
    new = b.replace_stop_limit(stop.order_id, D("97"), D("96"), "s2")
    assert b.get_order(stop.order_id).status is OrderStatus.REPLACED and new.stop_price == D(97)
    assert b.on_price("SOL/USD", D("97.5")) == []
    fills = b.on_price("SOL/USD", D("96.9"))
    assert len(fills) == 1 and fills[0].status is OrderStatus.FILLED
    assert fills[0].filled_avg_price >= D(96)
    assert b.get_position("SOL/USD") is None
    # cancelling a filled order returns it FILLED: the broker's state wins
    assert b.cancel_order(new.order_id).status is OrderStatus.FILLED


def test_stop_limit_on_bars_conservative(journal: Journal) -> None:
    b = sim(journal, Prices(SOL_USD="100"))
    b.buy_notional("SOL/USD", D("100"), "c1")
    held = b.get_position("SOL/USD").qty
    order = b.place_stop_limit_sell("SOL/USD", held, D("95"), D("94"), "s1")
    # gap below the limit: triggered but not filled on this bar
    assert b.on_bar("SOL/USD", D("93"), D("93.5"), D("92"), D("93")) == []
    assert b.get_order(order.order_id).is_open
    fills = b.on_bar("SOL/USD", D("93.5"), D("94.5"), D("93"), D("94.2"))
    assert fills and fills[0].filled_avg_price == D(94)


def test_orders_kept_in_memory_answer_exactly_like_the_file(journal: Journal) -> None:
    """`SimStore.keep_in_memory` (backtests, optimizer trials) must answer every order question exactly as
    reading the rows back would: same values, same Decimal exponents and time zones, same open set and
    order, through fills, triggers, replaces and cancels."""
    from kronos_bot.broker.sim_store import SimStore

    prices = Prices(SOL_USD="100", ETH_USD="2000")
    b = sim(journal, prices)
    b.store.keep_in_memory()
    b.buy_notional("SOL/USD", D("100"), "c1")
    b.buy_notional("ETH/USD", D("200"), "c2")
    sol, eth = b.get_position("SOL/USD").qty, b.get_position("ETH/USD").qty
    s1 = b.place_stop_limit_sell("SOL/USD", sol, D("95.50"), D("94.5"), "s1")
    e1 = b.place_stop_limit_sell("ETH/USD", eth, D("1900"), D("1880.0"), "e1")
    b.replace_stop_limit(s1.order_id, D("97"), D("96"), "s2")
    b.on_bar("ETH/USD", D("1870"), D("1875"), D("1860"), D("1870"))  # gapped below the limit: rests triggered
    b.on_price("SOL/USD", D("99"))
    b.cancel_order(e1.order_id)
    b.place_stop_limit_sell("ETH/USD", eth, D("1850"), D("1800"), "e2")
    file = SimStore(journal)  # reads the rows every time
    ids = [r["order_id"] for r in journal.query("SELECT order_id FROM sim_orders")]
    assert len(ids) == 6
    for order_id in ids:
        assert b.store.get_order(order_id) == file.get_order(order_id)
        found = file.get_order(order_id)
        assert found is not None
        memo = b.store.get_order_by_client_id(found[0].client_order_id)
        assert memo == found and str(memo[0].qty) == str(found[0].qty)
    for symbol in (None, "SOL/USD", "ETH/USD", "DOGE/USD"):
        assert b.store.open_orders(symbol) == file.open_orders(symbol)
    assert sorted(o.client_order_id for o, _ in b.store.open_orders()) == ["e2", "s2"]
    assert b.store.get_order("missing") is None and b.store.get_order_by_client_id("missing") is None
