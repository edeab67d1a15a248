"""The trader daemon: assembly of the parts, the APScheduler jobs, systemd readiness, clean shutdown.

Never imports torch (the forecaster is reached through `forecaster.factory`, which imports the model only
in `inprocess` mode), so a restart after a YAML edit takes about a second. Start-up order: open the
journal, build the broker (live trading refused without both switches), reconcile with the broker, wait
for the forecaster (bounded, logged), then READY=1 and the schedule:
  entry cycle  cron `schedule.entry_minutes` + `entry_offset_seconds`, UTC
  exit monitor every `schedule.exit_interval_seconds`
  watchdog     WATCHDOG=1 at half of systemd's WatchdogSec, from inside the scheduler (a stuck scheduler
               stops the pings and systemd restarts us)
All jobs: max_instances=1, coalesce, misfire grace. SIGTERM/SIGINT stop the scheduler, let a running job
finish within `shutdown_timeout_seconds`, then close the journal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import FrameType
from typing import Any, TextIO

from kronos_bot.broker import Broker
from kronos_bot.broker.factory import make_broker
from kronos_bot.config import Settings
from kronos_bot.forecast_types import Forecaster, ForecasterUnavailable
from kronos_bot.gates.forecast_cache import ForecastCache
from kronos_bot.logs import get_logger
from kronos_bot.market.bars import AlpacaMarketData
from kronos_bot.market.news import FearGreedProvider, build_news_feed
from kronos_bot.notify.listener import Notifications, notifications_from_settings
from kronos_bot.systemd import Notifier
from kronos_bot.trader.banner import banner_fields, banner_lines, heartbeat_fields, startup_facts
from kronos_bot.trader.cycle import CycleReport, EntryCycle, report_broker_down
from kronos_bot.trader.events import EventHub, TraderStarted, summarize_day
from kronos_bot.trader.execution import Executor
from kronos_bot.trader.exit_monitor import ExitMonitor
from kronos_bot.trader.forecast_source import ForecasterHandle, report_forecaster_down
from kronos_bot.trader.health import DegradedTracker
from kronos_bot.trader.journal import Journal
from kronos_bot.trader.metrics import TraderMetrics
from kronos_bot.trader.metrics_server import MetricsServer
from kronos_bot.trader.prices import PriceBook
from kronos_bot.trader.reconcile import Reconciler
from kronos_bot.trader.runtime_state import RuntimeRecorder
from kronos_bot.trader.skill_keeper import SkillKeeper

log = get_logger("kronos_bot.trader.daemon")
Clock = Callable[[], datetime]
# Seconds the queued notifications (the stop message above all) may take to go out at shutdown.
NOTIFY_CLOSE_SECONDS = 5.0
# schedule.run_on_start: the first cycle this long after the start, unless a scheduled one comes within
# the gap anyway.
RUN_ON_START_DELAY_SECONDS = 2.0
RUN_ON_START_MIN_GAP_SECONDS = 60.0
FIRST_HEARTBEAT_SECONDS = 60.0
# APScheduler's own warning for a run skipped because the previous one still runs; we log `job.skipped`.
_APSCHEDULER_SKIP_PREFIX = 'Execution of job "%s" skipped: maximum number of running instances'


class _DropSchedulerSkips(logging.Filter):
    """Drops APScheduler's skip warning: `TraderDaemon` logs the same fact as `job.skipped`, at debug and
    counted while an ongoing degraded episode explains why the previous run is slow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_APSCHEDULER_SKIP_PREFIX)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class TraderParts:
    """Every long-lived object of the trader, built once by `build_trader_parts`."""

    settings: Settings
    journal: Journal
    broker: Broker
    executor: Executor
    reconciler: Reconciler
    exit_monitor: ExitMonitor
    prices: PriceBook
    forecaster: ForecasterHandle
    health: DegradedTracker
    cycle: EntryCycle
    events: EventHub
    metrics: TraderMetrics | None = None
    notifications: Notifications | None = None

    def close(self) -> None:
        if self.notifications is not None:
            # What is queued (the stop message above all) gets a bounded chance to go out.
            self.notifications.close(NOTIFY_CLOSE_SECONDS)
        self.forecaster.close()
        self.journal.close()


def default_forecaster_factory(settings: Settings) -> Callable[[], Forecaster]:
    """`forecaster.mode` decides (service / inprocess / auto); see kronos_bot.forecaster.factory."""

    def build() -> Forecaster:
        from kronos_bot.forecaster.factory import make_forecaster

        return make_forecaster(settings, wait_ready=False)

    return build


def build_trader_parts(
    settings: Settings,
    *,
    clock: Clock = _utcnow,
    forecaster_factory: Callable[[], Forecaster] | None = None,
    market: Any = None,
) -> TraderParts:
    """Open the journal and build every part; raises (before anything trades) on a refused broker."""
    events = EventHub()
    health = DegradedTracker(clock, events=events)
    journal = Journal.from_settings(settings)
    try:
        events.add(RuntimeRecorder(journal, clock))
        market = market or AlpacaMarketData(settings, health=health)
        prices = PriceBook(market, health=health, clock=clock, max_jump_percent=settings.exits.max_price_jump_percent)
        broker = make_broker(settings, journal, prices.price, clock=clock, health=health)
        prices.broker = broker
        executor = Executor(broker, journal, settings, clock=clock, events=events)
        reconciler = Reconciler(broker, journal, executor, settings, price_source=prices.price, clock=clock)
        exit_monitor = ExitMonitor(broker, journal, executor, settings, prices.price, clock=clock, health=health)
        forecaster = ForecasterHandle(
            forecaster_factory or default_forecaster_factory(settings),
            health=health,
            retry_seconds=max(30.0, settings.schedule.exit_interval_seconds),
        )
        fear_greed = (
            FearGreedProvider(settings.gates.sentiment.fear_greed)
            if settings.gates.sentiment.fear_greed.enabled
            else None
        )
        skill = SkillKeeper(journal, settings)
        cycle = EntryCycle(
            settings,
            journal=journal,
            executor=executor,
            reconciler=reconciler,
            market=market,
            news_feed=build_news_feed(settings),
            forecaster=forecaster,
            health=health,
            fear_greed=fear_greed,
            forecast_cache=ForecastCache(),
            clock=clock,
            price_book=prices,
            skill=skill,
            events=events,
        )
        metrics = None
        if settings.metrics.enabled:
            metrics = TraderMetrics(
                journal, price_of=_cached_price(prices), skill_summary=lambda: skill.guard_summary, clock=clock
            )
            events.add(metrics)
        notifications = notifications_from_settings(settings)
        if notifications is not None:
            events.add(notifications)
    except BaseException:
        journal.close()
        raise
    log.info(
        "trader.built",
        broker=settings.effective_broker(),
        paper=not settings.broker.live,
        symbols=settings.symbols,
        forecaster_mode=settings.forecaster.mode,
        journal=settings.journal.path,
        config_fingerprint=settings.fingerprint(),
    )
    return TraderParts(
        settings,
        journal,
        broker,
        executor,
        reconciler,
        exit_monitor,
        prices,
        forecaster,
        health,
        cycle,
        events,
        metrics,
        notifications,
    )


def _cached_price(prices: PriceBook) -> Callable[[str], Decimal | None]:
    def price_of(symbol: str) -> Decimal | None:
        cached = prices.cached(symbol)
        return cached[0] if cached is not None else None

    return price_of


def trading_mode(settings: Settings) -> str:
    """dry-run (simulated broker), paper (Alpaca paper) or live (real money)."""
    if settings.effective_broker() == "sim":
        return "dry-run"
    return "live" if settings.broker.live else "paper"


def run_exit_check(parts: TraderParts, now: datetime | None = None) -> int:
    """One exit-monitor tick: refresh prices for open positions (best source), then trail; returns exits."""
    started = time.perf_counter()
    open_symbols = sorted({p.symbol for p in parts.journal.open_positions()})
    if open_symbols:
        parts.prices.refresh(open_symbols)
    closed = parts.exit_monitor.run_once(now)
    parts.events.exit_tick(time.perf_counter() - started, len(closed))
    return len(closed)


class TraderDaemon:
    """Owns the scheduler and the process lifecycle; the trading logic lives in the parts."""

    def __init__(self, parts: TraderParts, *, notifier: Notifier | None = None) -> None:
        from apscheduler.schedulers.blocking import BlockingScheduler

        self.parts = parts
        self.settings = parts.settings
        self.notifier = notifier or Notifier()
        sched = self.settings.schedule
        # Explicit on every job: a job never overlaps itself, missed runs collapse into one, and a run that
        # could not start within the grace time is skipped rather than run late.
        self.job_options: dict[str, Any] = {
            "max_instances": 1,
            "coalesce": True,
            "misfire_grace_time": sched.misfire_grace_seconds,
        }
        self.scheduler = BlockingScheduler(timezone=UTC, job_defaults=self.job_options)
        self._install_skip_reporting()
        self._running = 0
        self._running_lock = threading.Condition()
        self._stopping = threading.Event()
        self._stop_reason = "shutdown"
        self._started = time.monotonic()
        self.metrics_server: MetricsServer | None = None

    def _install_skip_reporting(self) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent

        scheduler_logger = logging.getLogger("apscheduler.scheduler")
        if not any(isinstance(f, _DropSchedulerSkips) for f in scheduler_logger.filters):
            scheduler_logger.addFilter(_DropSchedulerSkips())

        def on_skip(event: JobSubmissionEvent) -> None:
            quiet = self.parts.health.repeat(None, "job.skipped")
            (log.debug if quiet else log.warning)(
                "job.skipped", job=event.job_id, reason="the previous run of this job is still running"
            )

        self.scheduler.add_listener(on_skip, EVENT_JOB_MAX_INSTANCES)

    # ----- jobs -----

    def _guarded(self, name: str, job: Callable[[], Any]) -> Callable[[], None]:
        """Count running jobs (for a bounded shutdown) and never let an exception reach the scheduler."""

        def run() -> None:
            if self._stopping.is_set():
                return
            with self._running_lock:
                self._running += 1
            try:
                job()
            except Exception:
                log.exception("job.error", job=name)
            finally:
                with self._running_lock:
                    self._running -= 1
                    self._running_lock.notify_all()

        return run

    def entry_job(self) -> CycleReport:
        return self.parts.cycle.run(trade=True)

    def exit_job(self) -> None:
        run_exit_check(self.parts)

    def daily_summary_job(self) -> None:
        """The last 24 hours for the daily notification: realized P&L, trades, open positions, skill."""
        from kronos_bot.skill.summary import overall_line

        parts = self.parts
        now = parts.cycle.clock()
        account = parts.journal.runtime_state().get("account", {})
        summary = parts.cycle.skill.guard_summary if parts.cycle.skill is not None else None
        parts.events.daily_summary(
            summarize_day(
                now,
                parts.journal.closed_positions(since=now - timedelta(days=1)),
                parts.journal.open_positions(),
                equity=Decimal(account["equity"]) if account.get("equity") else None,
                skill_line=overall_line(summary) if summary and summary.get("n") else None,
            )
        )

    def watchdog_job(self) -> None:
        if self.scheduler.running and not self._stopping.is_set():
            self.notifier.watchdog()

    def schedule(self) -> None:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        sched = self.settings.schedule
        first_entry, first_exit = self.first_runs()
        entry_options = {"next_run_time": first_entry} if sched.run_on_start else {}
        self.scheduler.add_job(
            self._guarded("entry", self.entry_job),
            self._entry_trigger(),
            id="entry",
            name="entry cycle",
            **entry_options,
            **self.job_options,
        )
        self.scheduler.add_job(
            self._guarded("exit", self.exit_job),
            IntervalTrigger(seconds=sched.exit_interval_seconds, timezone=UTC),
            id="exit",
            name="exit monitor",
            next_run_time=first_exit,
            **self.job_options,
        )
        heartbeat = self.settings.logging.heartbeat_minutes
        if heartbeat:
            self.scheduler.add_job(
                self.heartbeat_job,
                IntervalTrigger(minutes=heartbeat, timezone=UTC),
                id="heartbeat",
                name="heartbeat",
                # The first one a minute after the start: a newcomer sees the bot is alive right away.
                next_run_time=datetime.now(UTC) + timedelta(seconds=FIRST_HEARTBEAT_SECONDS),
                **self.job_options,
            )
        notify = self.settings.notify
        if self.parts.notifications is not None and notify.events.daily_summary:
            self.scheduler.add_job(
                self._guarded("daily_summary", self.daily_summary_job),
                CronTrigger(hour=notify.daily_summary_hour_utc, minute=0, second=30, timezone=UTC),
                id="daily_summary",
                name="daily summary",
                **self.job_options,
            )
        watchdog = self.notifier.watchdog_seconds
        if watchdog:
            self.scheduler.add_job(
                self.watchdog_job,
                IntervalTrigger(seconds=max(1.0, watchdog / 2), timezone=UTC),
                id="watchdog",
                name="systemd watchdog",
                **self.job_options,
            )

    def _entry_trigger(self) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        sched = self.settings.schedule
        if sched.entry_interval_seconds:
            return IntervalTrigger(seconds=sched.entry_interval_seconds, timezone=UTC)
        return CronTrigger(minute=sched.entry_minutes, second=sched.entry_offset_seconds, timezone=UTC)

    def first_runs(self) -> tuple[datetime | None, datetime]:
        """When the first entry cycle and the first exit tick run (what the banner announces).

        With `run_on_start` the first cycle runs a few seconds after the start, unless a scheduled one is
        due within RUN_ON_START_MIN_GAP_SECONDS anyway (two cycles a few seconds apart would only repeat).
        """
        now = datetime.now(UTC)
        first_exit = now + timedelta(seconds=1)
        scheduled = self._entry_trigger().get_next_fire_time(None, now)
        if not self.settings.schedule.run_on_start:
            return scheduled, first_exit
        soon = now + timedelta(seconds=RUN_ON_START_DELAY_SECONDS)
        if scheduled is not None and (scheduled - now).total_seconds() <= RUN_ON_START_MIN_GAP_SECONDS:
            return scheduled, first_exit
        return soon, first_exit

    def heartbeat_job(self) -> None:
        """`heartbeat`: alive, what is held, what is degraded, when the next decision comes."""
        entry = self.scheduler.get_job("entry")
        last = self.parts.cycle.last_report
        log.info(
            "heartbeat",
            **heartbeat_fields(
                open_symbols=[p.symbol for p in self.parts.journal.open_positions()],
                degraded=[d.name for d in self.parts.health.active()],
                next_cycle=getattr(entry, "next_run_time", None),
                last_cycle=last.started_at if last is not None else None,
                last_status=last.status if last is not None else None,
                uptime_seconds=time.monotonic() - self._started,
            ),
        )

    def announce_banner(self, stream: TextIO | None = None) -> None:
        """The start-up banner: one `trader.banner` event, and on a terminal a short readable block."""
        from kronos_bot import __version__

        first_entry, first_exit = self.first_runs()
        facts = startup_facts(
            self.settings,
            version=__version__,
            mode=trading_mode(self.settings),
            next_entry_cycle=first_entry,
            next_exit_tick=first_exit,
        )
        log.info("trader.banner", **banner_fields(facts))
        out = stream or sys.stdout
        if out.isatty():
            print("\n".join(banner_lines(facts)), file=out, flush=True)

    # ----- lifecycle -----

    def startup(self) -> None:
        """Reconcile and wait for the forecaster before READY=1 (each bounded and logged; never fatal)."""
        start = time.monotonic()
        try:
            report = self.parts.reconciler.run()
            log.info(
                "startup.reconciled",
                ok=getattr(report, "ok", True),
                open_positions=len(self.parts.journal.open_positions()),
            )
            if report.error is not None:
                report_broker_down(self.parts.health, report.error, "startup reconcile incomplete")
        except Exception as exc:
            self.parts.health.set("broker", f"startup reconcile failed: {exc}")
        self._wait_for_forecaster()
        log.info(
            "trader.ready",
            startup_seconds=round(time.monotonic() - start, 3),
            degraded=[d.name for d in self.parts.health.active()],
        )

    def _wait_for_forecaster(self) -> None:
        fs = self.settings.forecaster
        try:
            forecaster = self.parts.forecaster.get()
        except ForecasterUnavailable as exc:
            log.warning(
                "startup.forecaster_unavailable",
                error=str(exc),
                effect="entries pause until the forecaster is available; exits run",
            )
            return
        waiter = getattr(forecaster, "wait_ready", None)
        if callable(waiter):
            try:
                waiter(fs.ready_timeout_seconds)
                self.parts.health.clear("forecaster")
            except ForecasterUnavailable as exc:
                report_forecaster_down(self.parts.health, str(exc))

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            if self._stopping.is_set():
                return
            log.info("trader.stopping", signal=signal.Signals(signum).name)
            self._stop_reason = signal.Signals(signum).name
            self._stopping.set()
            self.notifier.stopping()
            # Wakes the blocking main loop; running jobs go on in their threads (bounded below).
            threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": False}, daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def wait_for_running_jobs(self) -> bool:
        """Up to `shutdown_timeout_seconds` for the running job(s) to finish; False if they did not."""
        deadline = time.monotonic() + self.settings.schedule.shutdown_timeout_seconds
        with self._running_lock:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._running_lock.wait(left)
        return True

    def _start_metrics(self) -> None:
        metrics = self.parts.metrics
        if metrics is None:
            return
        cfg = self.settings.metrics
        token = self.settings.metrics_token.get_secret_value() if self.settings.metrics_token else None
        self.metrics_server = MetricsServer(metrics.registry, cfg.host, cfg.port, token)
        self.metrics_server.start()

    def _announce_start(self) -> None:
        self.parts.events.trader_started(
            TraderStarted(
                mode=trading_mode(self.settings),
                broker=self.settings.effective_broker(),
                symbols=tuple(self.settings.symbols),
                open_positions=len(self.parts.journal.open_positions()),
                degraded=tuple(d.name for d in self.parts.health.active()),
            )
        )

    def _close(self) -> None:
        """Say we stopped (runtime state, notification), stop serving metrics, close the parts."""
        try:
            self.parts.events.trader_stopped(self._stop_reason, len(self.parts.journal.open_positions()))
        except Exception:
            log.exception("trader.stop_report_failed")
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.parts.close()

    def run(self) -> int:
        self.install_signal_handlers()
        self.announce_banner()
        self._start_metrics()
        self.startup()
        if self._stopping.is_set():
            self._close()
            return 0
        self._announce_start()
        self.schedule()
        self.notifier.ready("trading" if not self.parts.health.active() else "trading (degraded)")
        log.info(
            "scheduler.start",
            entry_minutes=self.settings.schedule.entry_minutes,
            entry_offset_seconds=self.settings.schedule.entry_offset_seconds,
            exit_interval_seconds=self.settings.schedule.exit_interval_seconds,
            watchdog_seconds=self.notifier.watchdog_seconds,
        )
        try:
            self.scheduler.start()  # blocks until shutdown
        finally:
            self._stopping.set()
        finished = self.wait_for_running_jobs()
        if not finished:
            log.error(
                "trader.shutdown_timeout",
                timeout_seconds=self.settings.schedule.shutdown_timeout_seconds,
                effect="exiting with a job still running; the journal's intents make this safe",
            )
            self.parts.journal.close()
            os._exit(1)
        self._close()
        log.info("trader.stopped")
        return 0
