"""The crash campaign of issue #12: the real trader, SIGKILLed at random and at each dangerous point.

Set-up: the fake Alpaca (trading + market data over real HTTP) in this process; a scripted forecaster
service (our FastAPI app on a Unix socket) that calls every coin UP, so the trader enters whenever it may;
the trader itself as a subprocess (`kronos-bot run`, entry cycle every 2 s, exit tick every 1 s). A market
thread moves prices (a random walk with dips that fill backstops, as a real market fills resting stops).

Each round: start the trader, check the invariants after its first reconcile and exit tick (the trader
frozen with SIGSTOP while we look), provoke one dangerous moment and SIGKILL it there:
  random          at a random moment
  buy_post        an entry's POST reached the broker (and filled), the response never came back
  replace         a backstop PATCH reached the broker (the old stop replaced), no response
  fallback_place  replaces refused by the broker: the old stop cancelled, the new one's POST in flight
  cancel          an exit's DELETE of the backstop reached the broker, no response
  sell_post       the exit's market sell reached the broker (and filled), no response
  startup         during the start-up reconciliation (its positions read stalls)
and while the trader is down the market often falls through a backstop, which fills.

After the last round prices settle, the trader runs cleanly, stops on SIGTERM, and the campaign asserts:
0 duplicate buys, 0 filled buys missing from the journal, 0 positions of ours closed `external`, exactly
one live backstop per open position (the one the journal names), journal == broker (positions and every
fill). The default run makes 14 kills in about two minutes; `--crash-kills N` runs a longer campaign.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from kronos_bot.forecaster.server import BackgroundServer
from kronos_bot.forecaster.service import create_app
from kronos_bot.trader.journal import Journal
from tests.conftest import SHIPPED_CONFIG
from tests.fakealpaca import FakeAlpaca, Fault, FaultHandle, Request
from tests.process_support import Proc
from tests.trader_support import ScriptedForecaster

pytestmark = pytest.mark.e2e

SYMBOLS = ("BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD")
START_PRICES = {"BTC/USD": 60000.0, "ETH/USD": 3000.0, "SOL/USD": 150.0, "DOGE/USD": 0.15}
KINDS = ("buy_post", "replace", "cancel", "random", "sell_post", "startup", "fallback_place")
LIVE = ("new", "accepted", "pending_new", "partially_filled")
STALL_SECONDS = 60.0
ORDER_PATH = r"/v2/orders"
ORDER_ID_PATH = r"/v2/orders/[^/:]+"


@dataclass
class Tally:
    kills: Counter[str] = field(default_factory=Counter)
    provoked_but_missed: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    check_retries: int = 0
    failures: list[str] = field(default_factory=list)
    fills_while_down: int = 0


class Market:
    """Prices that move by themselves; resting stop_limits fill when the market trades through them."""

    def __init__(self, fake: FakeAlpaca, rng: random.Random) -> None:
        self.fake = fake
        self.rng = rng
        self.prices = dict(START_PRICES)
        self.lock = threading.Lock()
        self.paused = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="market", daemon=True)
        for symbol, price in self.prices.items():
            fake.trading.set_price(symbol, price)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)

    def set(self, symbol: str, price: float, *, trigger: bool = True) -> None:
        with self.lock:
            self.prices[symbol] = price
            self.fake.trading.set_price(symbol, f"{price:.9f}")
            if trigger:
                self.fake.trading.trigger(symbol, f"{price:.9f}")

    def move(self, symbol: str, factor: float, *, trigger: bool = True) -> None:
        self.set(symbol, self.prices[symbol] * factor, trigger=trigger)

    def _run(self) -> None:
        while not self.stopped.wait(0.25):
            if self.paused.is_set():
                continue
            for symbol in SYMBOLS:
                step = self.rng.gauss(0.0006, 0.0025)
                if self.rng.random() < 0.02:
                    step -= 0.02  # a dip: through the trailing stop, often through the backstop too
                self.move(symbol, 1 + step)


class JournalView:
    """Read-only looks at the trader's journal while it runs (or is frozen): never takes a write lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open_positions(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM positions WHERE status = 'open'")]
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            conn.close()


def own_live_stops(fake: FakeAlpaca, symbol: str | None = None) -> list[Any]:
    return [
        o
        for o in fake.trading.orders_for(symbol)
        if o.type == "stop_limit" and o.status in LIVE and o.client_order_id.startswith("kb-")
    ]


def backstop_problems(fake: FakeAlpaca, positions: list[dict[str, Any]]) -> list[str]:
    """The invariant of issue #12, as seen from outside: one live stop per position, named by the journal."""
    problems = []
    with fake.trading.lock:
        by_symbol = {p["symbol"]: p for p in positions}
        for symbol in SYMBOLS:
            live = own_live_stops(fake, symbol)
            position = by_symbol.get(symbol)
            if position is None:
                if live:
                    problems.append(f"{symbol}: {len(live)} live stop(s) of ours without an open position")
                continue
            if len(live) != 1:
                problems.append(
                    f"{symbol}: {len(live)} live stops for position {position['id']}: "
                    f"{[o.client_order_id for o in live]}"
                )
            elif live[0].id != position["backstop_order_id"]:
                problems.append(
                    f"{symbol}: journal names {position['backstop_client_order_id']}, "
                    f"the live stop is {live[0].client_order_id}"
                )
    return problems


def write_config(tmp: Path, fake_url: str, socket_path: str) -> Path:
    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    data["bars"].update(data_url_override=fake_url, backoff_seconds=0.0, max_attempts=2)
    data["broker"].update(
        kind="alpaca",
        trading_url_override=fake_url,
        backoff_seconds=0.0,
        max_attempts=2,
        request_timeout_seconds=1.0,
        fill_timeout_seconds=2,
    )
    data["schedule"].update(
        entry_interval_seconds=2, exit_interval_seconds=1, shutdown_timeout_seconds=15, misfire_grace_seconds=5
    )
    data["gates"]["kronos"].update(threshold_percent=0.1, min_confidence=0.0)
    data["gates"]["sentiment"].update(provider="none")
    data["risk"].update(cooldown_minutes=0, max_open_positions=4, daily_loss_limit_usd=0)
    data["sizing"].update(fixed_usd=200)
    data["exits"].update(trail_percent=1.0, stop_loss_percent=3.0)
    data["exits"]["backstop"].update(limit_offset_percent=1.0, replace_step_percent=0.2)
    data["forecaster"].update(
        mode="service",
        socket_path=socket_path,
        ready_timeout_seconds=10,
        request_timeout_seconds=5,
        max_attempts=1,
        backoff_seconds=0.1,
    )
    data["journal"]["path"] = str(tmp / "journal.sqlite")
    data["logging"].update(format="json", level="INFO")
    path = tmp / "bot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fresh_bars(fake: FakeAlpaca) -> None:
    last_open = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for symbol, price in START_PRICES.items():
        fake.market.add_hourly_bars(symbol, end=last_open, count=90, start_price=price / 1.09, drift=0.001)


class Campaign:
    def __init__(self, fake: FakeAlpaca, tmp: Path, kills: int, seed: int) -> None:
        self.fake = fake
        self.tmp = tmp
        self.kills_wanted = kills
        self.rng = random.Random(seed)
        self.market = Market(fake, self.rng)
        self.tally = Tally()
        self.journal = JournalView(tmp / "journal.sqlite")
        self.socket_dir = Path(tempfile.mkdtemp(prefix="kb-crash-", dir="/tmp"))
        self.forecaster = BackgroundServer(
            create_app(lambda: ScriptedForecaster(dict.fromkeys(SYMBOLS, 0.03))),
            socket_path=str(self.socket_dir / "f.sock"),
        ).start()
        config = write_config(tmp, fake.base_url, str(self.socket_dir / "f.sock"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONOS_BOT", "ALPACA_"))}
        env.update(
            KRONOS_BOT_CONFIG=str(config),
            ALPACA_API_KEY="PKCRASHTESTKEY",
            ALPACA_SECRET_KEY="crash-secret",
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
        )
        self.env = env
        self.trader: Proc | None = None
        self.starts = 0

    # ----- the trader process -----

    def start_trader(self, *, wait_ready: bool = True) -> Proc:
        self.starts += 1
        self.trader = Proc(f"trader{self.starts}", ["run"], self.env, self.tmp)
        if wait_ready:
            self.trader.wait_for(lambda ev: any(e.get("event") == "trader.ready" for e in ev), 30, "trader.ready")
        return self.trader

    def kill(self, kind: str) -> None:
        assert self.trader is not None
        self.trader.popen.send_signal(signal.SIGKILL)
        self.trader.popen.wait(10)
        self.trader._log.close()
        self.tally.kills[kind] += 1
        self.fake.server.clear_faults()

    def check_invariants(self, label: str) -> None:
        """Frozen trader, outside view; a transient mismatch (it was stopped mid-step) is looked at again."""
        assert self.trader is not None
        self.tally.checks += 1
        problems: list[str] = []
        for _attempt in range(5):
            self.trader.popen.send_signal(signal.SIGSTOP)
            try:
                problems = backstop_problems(self.fake, self.journal.open_positions())
            finally:
                self.trader.popen.send_signal(signal.SIGCONT)
            if not problems:
                return
            self.tally.check_retries += 1
            time.sleep(1.2)  # one exit tick, then look again
        self.tally.failures.append(f"{label}: {problems}")

    # ----- provoking a dangerous moment -----

    def _stall(self, pattern: str, method: str, when: Callable[[Request], bool] | None = None) -> FaultHandle:
        return self.fake.fail(pattern, Fault.stall_after(STALL_SECONDS), times=1, method=method, when=when)

    def _wait_hit(self, handle: FaultHandle, timeout: float, provoke: Callable[[], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        next_provoke = time.monotonic()
        while time.monotonic() < deadline:
            if handle.hits:
                time.sleep(0.05)  # let the broker-side handler finish its work
                return True
            if provoke is not None and time.monotonic() >= next_provoke:
                provoke()
                next_provoke = time.monotonic() + 1.5
            if self.trader is not None and self.trader.popen.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def _symbols_with(self, open_: bool) -> list[str]:
        held = {p["symbol"] for p in self.journal.open_positions()}
        return [s for s in SYMBOLS if (s in held) == open_]

    def _drop_one(self, *, trigger: bool) -> None:
        held = self._symbols_with(True)
        if held:
            self.market.move(self.rng.choice(held), 0.985, trigger=trigger)

    def _raise_one(self) -> None:
        held = self._symbols_with(True)
        if held:
            self.market.move(self.rng.choice(held), 1.01, trigger=False)

    def round(self, kind: str) -> None:
        if kind == "startup":
            handle = self._stall(r"/v2/positions", "GET")
            self.start_trader(wait_ready=False)
            hit = self._wait_hit(handle, 20)
            self._finish(kind, hit)
            return
        self.start_trader()
        time.sleep(1.5)  # the first reconcile is done; let an exit tick and a cycle run
        self.check_invariants(f"after restart {self.starts} (before {kind})")
        handle: FaultHandle | None = None
        provoke: Callable[[], None] | None = None
        if kind == "buy_post":
            handle = self._stall(ORDER_PATH, "POST", lambda r: (r.json or {}).get("side") == "buy")
            provoke = (lambda: None) if self._symbols_with(False) else (lambda: self._drop_one(trigger=False))
        elif kind == "replace":
            handle = self._stall(ORDER_ID_PATH, "PATCH")
            provoke = self._raise_one
        elif kind == "fallback_place":
            self.fake.trading.refuse_replace = True
            handle = self._stall(ORDER_PATH, "POST", lambda r: (r.json or {}).get("type") == "stop_limit")
            provoke = self._raise_one
        elif kind == "cancel":
            handle = self._stall(ORDER_ID_PATH, "DELETE")
            provoke = lambda: self._drop_one(trigger=False)  # noqa: E731
        elif kind == "sell_post":
            handle = self._stall(
                ORDER_PATH,
                "POST",
                lambda r: (r.json or {}).get("side") == "sell" and (r.json or {}).get("type") == "market",
            )
            provoke = lambda: self._drop_one(trigger=False)  # noqa: E731
        if handle is None:
            time.sleep(self.rng.uniform(0.2, 2.5))
            self.kill("random")
        else:
            self._finish(kind, self._wait_hit(handle, 10, provoke))
        self.fake.trading.refuse_replace = False
        self._while_down()

    def _finish(self, kind: str, hit: bool) -> None:
        if not hit:
            self.tally.provoked_but_missed[kind] += 1
        self.kill(kind if hit else "random")

    def _while_down(self) -> None:
        """Often the market falls through a backstop while the bot is down: the stop fills at the broker."""
        if self.rng.random() >= 0.5:
            return
        with self.fake.trading.lock:
            stops = own_live_stops(self.fake)
            if not stops:
                return
            stop = self.rng.choice(stops)
            price = float(stop.stop_price) * 0.997  # below the stop, above its limit (1 % lower)
        self.market.set(stop.symbol, price, trigger=True)
        if stop.status == "filled":
            self.tally.fills_while_down += 1

    # ----- the whole campaign -----

    def run(self) -> None:
        self.market.start()
        try:
            for i in range(self.kills_wanted):
                self.round(KINDS[i % len(KINDS)])
        finally:
            self.market.stop()
        # Settle: no faults, prices still, the trader runs cleanly a while and stops on SIGTERM.
        self.fake.server.clear_faults()
        self.start_trader()
        time.sleep(4.0)
        self.check_invariants("settled")
        assert self.trader is not None
        assert self.trader.stop(signal.SIGTERM, timeout=40) == 0
        assert any(e.get("event") == "trader.stopped" for e in self.trader.events())

    def close(self) -> None:
        if self.trader is not None and self.trader.popen.poll() is None:
            self.trader.popen.kill()
            self.trader.popen.wait(10)
        self.market.stop()
        self.forecaster.stop()


def final_report(fake: FakeAlpaca, journal_path: Path, tally: Tally) -> dict[str, Any]:
    """Every invariant checked against the broker's state after the settle; returns the totals."""
    with Journal(journal_path) as journal:
        positions = journal.closed_positions() + journal.open_positions()
        orders = {o.client_order_id: o for o in journal.orders(limit=1_000_000)}
        open_positions = journal.open_positions()
    broker_orders = fake.trading.orders_for()
    filled_buys = [o for o in broker_orders if o.side == "buy" and o.filled_qty > 0]
    entries = Counter(p.entry_client_order_id for p in positions)
    problems: list[str] = []
    duplicates = [cid for cid, n in entries.items() if n > 1]
    problems += [f"two positions from one buy {cid}" for cid in duplicates]
    missing = [o.client_order_id for o in filled_buys if o.client_order_id not in entries]
    problems += [f"filled buy {cid} is missing from the journal" for cid in missing]
    # A duplicate buy would leave coins the journal does not know: journal == broker, per symbol.
    for symbol in SYMBOLS:
        held = fake.trading.position_qty(symbol)
        journaled = sum((p.qty for p in open_positions if p.symbol == symbol), Decimal(0))
        if held != journaled:
            problems.append(f"{symbol}: broker holds {held}, the journal {journaled}")
    external = [p.id for p in positions if p.exit_reason == "external"]
    problems += [f"position {pid} of ours closed as external" for pid in external]
    problems += backstop_problems(
        fake,
        [
            {
                "symbol": p.symbol,
                "id": p.id,
                "backstop_order_id": p.backstop_order_id,
                "backstop_client_order_id": p.backstop_client_order_id,
            }
            for p in open_positions
        ],
    )
    stray = [o.client_order_id for o in broker_orders if o.status in LIVE and o.type != "stop_limit"]
    problems += [f"order {cid} still live at the broker after the settle" for cid in stray]
    # Every fill at the broker is in the journal with the same quantity (nothing lost, nothing invented).
    for order in broker_orders:
        if order.filled_qty <= 0:
            continue
        row = orders.get(order.client_order_id)
        if row is None or row.filled_qty != order.filled_qty:
            problems.append(
                f"fill of {order.client_order_id} ({order.filled_qty}) journaled as "
                f"{None if row is None else row.filled_qty}"
            )
    for position in positions:
        if position.status == "closed" and position.exit_reason not in ("dust",):
            sold = sum(
                (
                    o.filled_qty
                    for o in broker_orders
                    if o.side == "sell"
                    and o.filled_qty > 0
                    and orders.get(o.client_order_id) is not None
                    and orders[o.client_order_id].position_id == position.id
                ),
                Decimal(0),
            )
            if sold != position.exit_qty:
                problems.append(f"position {position.id}: exit_qty {position.exit_qty}, sells filled {sold}")
    return {
        "kills": dict(tally.kills),
        "kills_total": sum(tally.kills.values()),
        "provoked_but_missed": dict(tally.provoked_but_missed),
        "buys_filled": len(filled_buys),
        "positions": len(positions),
        "exits_by_reason": dict(Counter(p.exit_reason for p in positions if p.exit_reason)),
        "open_at_end": len(open_positions),
        "backstop_fills_while_down": tally.fills_while_down,
        "backstop_replaces": len([o for o in broker_orders if o.replaces]),
        "invariant_checks": tally.checks,
        "invariant_rechecks": tally.check_retries,
        "invariant_failures": tally.failures,
        "final_problems": problems,
    }


@pytest.mark.timeout(7200)  # a long campaign (--crash-kills) may take a while; the default one ~90 s
def test_crash_campaign(fake_alpaca: FakeAlpaca, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    kills = int(request.config.getoption("--crash-kills") or os.environ.get("KRONOS_BOT_CRASH_KILLS") or 14)
    seed = int(request.config.getoption("--crash-seed") or 12)
    fake_alpaca.trading.cash = Decimal("1000000")
    fresh_bars(fake_alpaca)
    started = time.monotonic()
    campaign = Campaign(fake_alpaca, tmp_path, kills, seed)
    try:
        campaign.run()
    finally:
        campaign.close()
    report = final_report(fake_alpaca, tmp_path / "journal.sqlite", campaign.tally)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["seed"] = seed
    summary = json.dumps(report, indent=2, default=str)
    (tmp_path / "campaign.json").write_text(summary)
    print(f"\ncrash campaign: {summary}")
    assert report["kills_total"] >= min(kills, 12)
    assert report["buys_filled"] >= 5, summary  # the campaign traded for real
    assert report["invariant_failures"] == [], summary
    assert report["final_problems"] == [], summary
