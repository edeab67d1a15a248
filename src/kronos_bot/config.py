"""The one validated settings object: `config/bot.yaml`, overridden by environment, secrets from env/.env.

Precedence (highest first): environment variables `KRONOS_BOT__SECTION__KEY`, then `.env`, then the YAML
file(s), then the defaults below. Several YAML files may be layered (`--config base.yaml --config
overlay.yaml`): each is read and checked on its own, then they are deep-merged in order (see
`merge_layers`) and only the result is validated, so an overlay may hold just the keys it changes.

Every section forbids unknown keys so a typo in YAML refuses to start instead of silently using a
default; `ConfigError` carries the file, the dotted key path and the reason. For the same reason an empty
file, a secret written in the YAML (under any of its names, in any case, at any depth) and a non-finite
number (.inf / .nan, or "inf" from the environment) are refused too.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

import yaml
from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CONFIG_ENV_VAR = "KRONOS_BOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/bot.yaml")
ENV_PREFIX = "KRONOS_BOT__"
ENV_DELIMITER = "__"
SECRET_FIELDS = (
    "alpaca_api_key",
    "alpaca_secret_key",
    "hf_token",
    "forecaster_token",
    "live_trading_confirm",
    "notify_urls",
    "metrics_token",
)
# Alpaca's own SDK names for the two keys: the bot does not read them, but written in the YAML they are
# still secrets, and the refusal points at the variable the bot does read.
FOREIGN_SECRET_NAMES = {"APCA_API_KEY_ID": "alpaca_api_key", "APCA_API_SECRET_KEY": "alpaca_secret_key"}

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
SizeFraction = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveSeconds = Annotated[float, Field(gt=0.0)]
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,10}/USD$")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs; any other name or address counts as reachable from outside."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Section(BaseModel):
    """Base of every YAML section: unknown keys are errors, values are validated on assignment too."""

    # allow_inf_nan=False: `.inf` as a size or `.nan` as a threshold passes every `gt`/`le` bound that
    # pydantic checks (or fails it with a misleading reason), so non-finite floats are refused outright.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


class ScheduleSettings(Section):
    # Minutes of the hour at which the entry cycle runs (APScheduler cron `minute` field syntax).
    entry_minutes: str = "0,15,30,45"
    # Seconds after each entry minute, so that the hourly bar has closed and been published.
    entry_offset_seconds: int = Field(30, ge=0, le=59)
    # Development and tests only: run the entry cycle every N seconds instead of the cron (0 = use the cron).
    entry_interval_seconds: int = Field(0, ge=0)
    # How often the exit monitor checks trailing stops, in seconds.
    exit_interval_seconds: int = Field(60, ge=1, le=3600)
    # A job that starts later than this (seconds) after its time is skipped instead of run late.
    misfire_grace_seconds: int = Field(120, ge=1)
    # On SIGTERM, how long (seconds) a running job may take to finish before the daemon exits anyway.
    shutdown_timeout_seconds: float = Field(30.0, gt=0)
    # One entry cycle right after start (unless a scheduled one is due within a minute anyway), so the
    # first decisions appear at once instead of up to 15 minutes later.
    run_on_start: bool = True

    @field_validator("entry_minutes")
    @classmethod
    def _valid_cron_minutes(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger(minute=value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a valid cron minute expression: {exc}") from exc
        return value


class BarsSettings(Section):
    # How many closed hourly bars each cycle fetches and feeds to the gates (Kronos context length).
    count: int = Field(60, ge=30, le=512)
    # Alpaca crypto data feed.
    feed: Literal["us"] = "us"
    # The last closed bar may be at most this many minutes old (bar close time vs. now), else the symbol is skipped.
    max_last_bar_age_minutes: int = Field(90, ge=1)
    # Missing hours inside the window: reject the symbol above this count, else forward-fill them.
    max_missing_bars: int = Field(3, ge=0)
    # What to do with up to max_missing_bars gaps: forward-fill (zero volume, logged) or reject the symbol.
    missing_policy: Literal["ffill", "reject"] = "ffill"
    # HTTP timeout for one data request, seconds.
    request_timeout_seconds: PositiveSeconds = 10.0
    # Attempts per request on 429 / 5xx / timeouts before the symbols are skipped for this cycle.
    max_attempts: int = Field(4, ge=1, le=10)
    # First retry delay in seconds (doubles each attempt; a 429's Retry-After wins when longer).
    backoff_seconds: float = Field(1.0, ge=0)
    # Longest single wait between attempts, Retry-After included, seconds.
    max_retry_delay_seconds: float = Field(60.0, ge=0)
    # A bar whose true range exceeds this multiple of the window's median true range is bad data: skip the symbol.
    max_range_multiple: float = Field(25.0, gt=1, le=1000)
    # Base URL override for Alpaca's market-data API (tests point it at a local fake server).
    data_url_override: str | None = None


class TechnicalSettings(Section):
    # Check switches: a disabled check neither passes nor fails the gate.
    check_rsi: bool = True
    check_ema: bool = True
    check_macd: bool = True
    # RSI look-back in bars (Wilder smoothing).
    rsi_period: int = Field(14, ge=2, le=100)
    # RSI must lie inside [rsi_min, rsi_max] (0-100): not oversold into a crash, not overbought.
    rsi_min: float = Field(40.0, ge=0, le=100)
    rsi_max: float = Field(70.0, ge=0, le=100)
    # EMA periods in bars: the fast one must be above the slow one, and the close above the slow one.
    ema_fast: int = Field(12, ge=2, le=200)
    ema_slow: int = Field(26, ge=3, le=400)
    # MACD periods in bars: line = EMA(fast) - EMA(slow), signal = EMA(line, signal); line > 0, histogram rising.
    macd_fast: int = Field(12, ge=2, le=200)
    macd_slow: int = Field(26, ge=3, le=400)
    macd_signal: int = Field(9, ge=2, le=100)

    @field_validator("rsi_max", "ema_slow", "macd_slow")
    @classmethod
    def _above_its_partner(cls, value: float, info: ValidationInfo) -> float:
        partner = {"rsi_max": "rsi_min", "ema_slow": "ema_fast", "macd_slow": "macd_fast"}[str(info.field_name)]
        lower = info.data.get(partner)
        if lower is not None and value <= lower:
            raise ValueError(f"must be greater than {partner} ({lower})")
        return value


class FearGreedSettings(Section):
    # Blend the public Crypto Fear & Greed index into the sentiment score (off by default).
    enabled: bool = False
    # Weight of the index in the blended score (0-1); the news score gets the rest.
    weight: Probability = 0.2
    # Public JSON endpoint of the index (no key needed).
    url: str = "https://api.alternative.me/fng/?limit=1"
    # HTTP timeout, seconds.
    timeout_seconds: PositiveSeconds = 5.0
    # A reading is reused for this many minutes (the index changes daily).
    max_age_minutes: int = Field(60, ge=1)


class SentimentSettings(Section):
    # News provider: Alpaca News (needs API keys) or none (the gate then reports NO_DATA).
    provider: Literal["alpaca_news", "none"] = "alpaca_news"
    # How far back news is read, hours.
    lookback_hours: int = Field(24, ge=1, le=168)
    # Recency weighting: an article this many hours old counts half as much as a new one.
    half_life_hours: float = Field(6.0, gt=0)
    # Weighted mean compound score (-1..1) at or above which the gate is BULLISH.
    bullish_threshold: float = Field(0.15, ge=-1, le=1)
    # Weighted mean compound score at or below which the gate is BEARISH.
    bearish_threshold: float = Field(-0.15, ge=-1, le=1)
    # Any single article scoring below this (-1..1) within veto_window_hours makes the gate BEARISH.
    veto_threshold: float = Field(-0.6, ge=-1, le=1)
    # Window of the single-article veto, hours.
    veto_window_hours: int = Field(6, ge=1, le=168)
    # Most articles read per cycle and symbol.
    max_articles: int = Field(50, ge=1, le=50)
    # HTTP timeout for the news request, seconds.
    request_timeout_seconds: PositiveSeconds = 10.0
    # Attempts per news request on 429/5xx/timeouts (cached articles still serve when all fail).
    max_attempts: int = Field(3, ge=1, le=10)
    # First news retry delay, seconds (doubles each attempt).
    backoff_seconds: float = Field(1.0, ge=0)
    # Optional second provider.
    fear_greed: FearGreedSettings = FearGreedSettings()

    @field_validator("bearish_threshold")
    @classmethod
    def _below_bullish(cls, value: float, info: ValidationInfo) -> float:
        bullish = info.data.get("bullish_threshold")
        if bullish is not None and value >= bullish:
            raise ValueError(f"must be below bullish_threshold ({bullish})")
        return value


class KronosGateSettings(Section):
    # magnitude: predicted close vs last close; ensemble: share of sampled paths ending up/down.
    method: Literal["magnitude", "ensemble"] = "magnitude"
    # Number of bars Kronos predicts (>= 1).
    pred_len: int = Field(4, ge=1, le=64)
    # Which predicted bar (1-based) is the horizon compared with the last close; <= pred_len.
    horizon: int = Field(4, ge=1, le=64)
    # magnitude: UP above +threshold, DOWN below -threshold, else FLAT; percent of the last close.
    threshold_percent: float = Field(0.3, ge=0, le=50)
    # ensemble: a path counts as up when its horizon close exceeds last close x (1 + this percent / 100).
    ensemble_threshold_percent: float = Field(0.0, ge=0, le=50)
    # A signal is actionable when its confidence (0-1) is at least this.
    min_confidence: Probability = 0.55
    # Sampled paths per symbol: P(up), quantiles and the live skill scores need paths (below 16 they are
    # coarse, and a warning says so); magnitude reads the mean path.
    samples: int = Field(32, ge=1, le=256)
    # Sampling temperature (> 0).
    temperature: float = Field(1.0, gt=0, le=10)
    # Nucleus sampling mass (0-1]; ignored when top_k > 0.
    top_p: float = Field(0.9, gt=0, le=1)
    # Keep only the k most likely tokens (0 = off; 1 = greedy).
    top_k: int = Field(0, ge=0)
    # Seed for reproducible sampling (null = a fresh seed each forecast, recorded so it can be recomputed).
    seed: int | None = None
    # What to do when the live scores show no skill (Brier skill vs no-change below 0 with 95 % confidence):
    # off | warn (log it once, flag status and decisions) | block (Kronos signals become non-actionable).
    skill_guard: Literal["off", "warn", "block"] = "warn"
    # Scored forecasts needed before the guard judges at all.
    skill_guard_min_n: int = Field(200, ge=10)

    @field_validator("horizon")
    @classmethod
    def _horizon_within_prediction(cls, value: int, info: ValidationInfo) -> int:
        pred_len = info.data.get("pred_len")
        if pred_len is not None and value > pred_len:
            raise ValueError(f"must be <= pred_len ({pred_len})")
        return value


class GatesSettings(Section):
    technical: TechnicalSettings = TechnicalSettings()
    sentiment: SentimentSettings = SentimentSettings()
    kronos: KronosGateSettings = KronosGateSettings()


class TierSettings(Section):
    # Size multiplier when technical, sentiment and Kronos all confirm (0-1].
    triple_confirmed: SizeFraction = 1.0
    # Size multiplier when Kronos confirms but not all three gates do (0-1]; at most triple_confirmed.
    kronos_only: SizeFraction = 0.6

    @field_validator("kronos_only")
    @classmethod
    def _not_above_triple(cls, value: float, info: ValidationInfo) -> float:
        """A partial confirmation sized above a full one would reward the weaker signal with more money."""
        triple = info.data.get("triple_confirmed")
        if triple is not None and value > triple:
            raise ValueError(
                f"must not exceed triple_confirmed ({triple}): a partial confirmation must never be sized "
                "above a full one"
            )
        return value


class EngineSettings(Section):
    tiers: TierSettings = TierSettings()
    # Require a technical PASS for the kronos_only tier too.
    require_technical_for_kronos_only: bool = False
    # How NO_DATA sentiment counts: like NEUTRAL (default) or as a block.
    sentiment_no_data: Literal["neutral", "block"] = "neutral"


class SizingSettings(Section):
    # fixed_usd: every full-size entry is fixed_usd; equity_fraction: a fraction of account equity.
    mode: Literal["fixed_usd", "equity_fraction"] = "fixed_usd"
    # Full-size entry in USD (before the tier multiplier).
    fixed_usd: float = Field(100.0, gt=0)
    # Full-size entry as a fraction of equity (0-1].
    equity_fraction: SizeFraction = 0.05
    # Cap on one position's notional, USD.
    max_position_notional: float = Field(1000.0, gt=0)
    # Entries below this notional (USD) are skipped.
    min_notional: float = Field(10.0, ge=1)


class RiskSettings(Section):
    # Most positions open at once across all symbols.
    max_open_positions: int = Field(3, ge=1, le=50)
    # After a position in a symbol closes, no new entry in it for this many minutes.
    cooldown_minutes: int = Field(60, ge=0)
    # Realized loss (USD) within a UTC day at which entries pause until the next UTC day (0 = off).
    daily_loss_limit_usd: float = Field(50.0, ge=0)


class BackstopSettings(Section):
    # Keep a broker-side GTC stop_limit at the current stop level while a position is open.
    enabled: bool = True
    # The backstop's limit price sits this percent below its stop price (so it can fill in a fast fall).
    limit_offset_percent: float = Field(1.0, gt=0, lt=50)
    # Replace the backstop only when the stop has risen by more than this percent since it was placed.
    replace_step_percent: float = Field(0.5, ge=0, lt=50)


class ExitSettings(Section):
    # Trailing stop: exit when price <= high-water mark x (1 - trail_percent / 100); percent in (0, 50).
    trail_percent: float = Field(2.0, gt=0, lt=50)
    # Trail only once profit from entry reaches this percent (0 = trail from entry).
    trail_activation_percent: float = Field(0.0, ge=0, lt=100)
    # Hard stop-loss below entry, percent (0 = off).
    stop_loss_percent: float = Field(5.0, ge=0, lt=100)
    # Close any position held longer than this many hours (0 = no limit).
    max_hold_hours: float = Field(0.0, ge=0)
    # A latest price this many percent away from the last accepted price (and outside the last closed bar's
    # range widened by as much) is suspect: it moves nothing until the next tick or the quote mid confirms it.
    max_price_jump_percent: float = Field(8.0, gt=0, le=100)
    backstop: BackstopSettings = BackstopSettings()


class SimBrokerSettings(Section):
    # Starting cash of the simulated account, USD.
    starting_cash: float = Field(10_000.0, gt=0)
    # Fee per fill, percent of notional, taken in the received asset as Alpaca does (0.25 = taker).
    fee_percent: float = Field(0.25, ge=0, lt=10)
    # Fill price slippage against the order, basis points.
    slippage_bps: float = Field(5.0, ge=0, lt=1000)


class BrokerSettings(Section):
    # auto: Alpaca paper when API keys are set, else the simulated broker; or force one.
    kind: Literal["auto", "alpaca", "sim"] = "auto"
    # Live trading needs this AND the environment variable KRONOS_BOT_LIVE_TRADING=I_UNDERSTAND.
    live: bool = False
    # Adopt broker positions the bot did not open (manage their exits) instead of ignoring them.
    adopt_external_positions: bool = False
    # HTTP timeout for trading requests, seconds.
    request_timeout_seconds: PositiveSeconds = 10.0
    # Attempts per trading request on 429/5xx/timeouts (an order is looked up before any retry).
    max_attempts: int = Field(3, ge=1, le=10)
    # First trading retry delay, seconds (doubles each attempt; Retry-After wins when longer).
    backoff_seconds: float = Field(1.0, ge=0)
    # How long an entry/exit waits for a market order to fill before leaving it to reconciliation, seconds.
    fill_timeout_seconds: float = Field(10.0, ge=0)
    # Base URL override for Alpaca's trading API (tests point it at a local fake server).
    trading_url_override: str | None = None
    sim: SimBrokerSettings = SimBrokerSettings()


class ForecasterSettings(Section):
    # auto: the service when its socket answers, else load the model in this process (with a warning);
    # service: the service only (systemd); inprocess: always load the model here.
    mode: Literal["auto", "service", "inprocess"] = "auto"
    # Unix socket the forecaster serves on (group-readable only).
    socket_path: str = "/run/kronos-bot/forecaster.sock"
    # Instead of the socket: the forecaster's URL (e.g. http://gpu-host:8765); needs KRONOS_BOT_FORECASTER_TOKEN.
    url: str | None = None
    # TCP bind address and port when `kronos-bot forecaster --host/--port` is used.
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    # Client timeout for one forecast request, seconds.
    request_timeout_seconds: PositiveSeconds = 30.0
    # Client attempts on connection errors and 5xx (never on 4xx).
    max_attempts: int = Field(3, ge=1, le=10)
    # First client retry delay, seconds (doubles each attempt).
    backoff_seconds: float = Field(0.5, ge=0)
    # How long the trader waits for the forecaster to become ready at start, seconds.
    ready_timeout_seconds: float = Field(300.0, ge=0)
    # Hugging Face repo id or local directory of the predictor, and its pinned revision.
    model: str = "NeoQuasar/Kronos-small"
    model_revision: str | None = "901c26c1332695a2a8f243eb2f37243a37bea320"
    # Hugging Face repo id or local directory of the tokenizer, and its pinned revision.
    tokenizer: str = "NeoQuasar/Kronos-Tokenizer-base"
    tokenizer_revision: str | None = "0e0117387f39004a9016484a186a908917e22426"
    # Check config.json and model.safetensors against the known sha256 values before loading.
    verify_sha256: bool = True
    # Hugging Face cache directory (null = the Hub default, ~/.cache/huggingface/hub).
    hf_cache_dir: str | None = None
    # torch device: cpu, or cuda / cuda:N on a GPU host.
    device: str = "cpu"
    # torch CPU threads (>= 1).
    threads: int = Field(2, ge=1, le=256)
    # Longest token window the model attends to (Kronos-small: 512).
    max_context: int = Field(512, ge=16, le=2048)
    # Series shorter than this many bars are rejected.
    min_context_bars: int = Field(16, ge=2)
    # The service answers 413 above this many series x samples x bars in one request.
    max_request_cells: int = Field(4 * 64 * 512, ge=1)
    # Requests waiting behind the running one; more get 503 and the client backs off.
    max_queued_requests: int = Field(32, ge=1)
    # On SIGTERM, how long a running forecast may finish, seconds (keep below the unit's TimeoutStopSec=30).
    shutdown_timeout_seconds: float = Field(10.0, gt=0, le=25)
    # Serve the interactive API docs (/docs) and the schema (/openapi.json); off in production.
    api_docs: bool = False


class SkillSettings(Section):
    # A decision's shadow entry (what entering at the next bar open would have done) is followed for at
    # most this many hours, then valued at that bar's close (live at most bars.count - 2: it is computed
    # from the cycle's bars).
    shadow_max_hours: int = Field(48, ge=1, le=500)


NotifyEvent = Literal[
    "position_opened", "position_closed", "degraded", "trader_started", "trader_stopped", "daily_summary"
]
NotifyLevel = Literal["info", "warning", "error"]


class NotifyEventSwitches(Section):
    # Each event can be switched off on its own; all are on by default.
    position_opened: bool = True
    position_closed: bool = True
    degraded: bool = True
    trader_started: bool = True
    trader_stopped: bool = True
    daily_summary: bool = True


class NotifySettings(Section):
    # Push notifications through apprise to the URLs in KRONOS_BOT_NOTIFY_URLS (a secret: environment or
    # .env only). Without URLs nothing is sent, whatever is set here.
    enabled: bool = True
    events: NotifyEventSwitches = NotifyEventSwitches()
    # Messages below this level are not sent: info (everything), warning (degraded, a losing close,
    # stops), error (only errors).
    min_level: NotifyLevel = "info"
    # UTC hour (0-23) of the daily summary (the day's P&L, open positions, forecast skill).
    daily_summary_hour_utc: int = Field(0, ge=0, le=23)
    # Messages waiting to be sent; a full queue drops new ones (counted, warned once per episode).
    queue_size: int = Field(100, ge=1, le=10_000)
    # Seconds one delivery to one URL may take (connect and read), and attempts per URL.
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    max_attempts: int = Field(3, ge=1, le=10)
    # Seconds before the second attempt, doubled for each further one.
    backoff_seconds: float = Field(2.0, ge=0, le=300)


class MetricsSettings(Section):
    # The trader serves Prometheus metrics at http://host:port/metrics. Off loopback it requires the
    # bearer token KRONOS_BOT_METRICS_TOKEN (a secret: environment or .env only).
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9478, ge=1, le=65535)


class JournalSettings(Section):
    # SQLite file holding decisions, orders, positions and forecasts (relative to the working directory).
    path: str = "var/kronos-bot.sqlite"


class LoggingSettings(Section):
    # Minimum level logged.
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line (journald); console: readable; auto: console on a TTY, else json.
    format: Literal["auto", "json", "console"] = "auto"
    # Minutes between `heartbeat` events (open positions, degraded parts, next cycle); 0 = none.
    heartbeat_minutes: int = Field(15, ge=0, le=1440)


class Settings(BaseSettings):
    """Everything the bot reads at start; built by `load_settings`, never mutated afterwards."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        case_sensitive=False,
        allow_inf_nan=False,
    )

    # Symbols traded, in BASE/USD form.
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD"])
    schedule: ScheduleSettings = ScheduleSettings()
    bars: BarsSettings = BarsSettings()
    gates: GatesSettings = GatesSettings()
    engine: EngineSettings = EngineSettings()
    sizing: SizingSettings = SizingSettings()
    risk: RiskSettings = RiskSettings()
    exits: ExitSettings = ExitSettings()
    broker: BrokerSettings = BrokerSettings()
    forecaster: ForecasterSettings = ForecasterSettings()
    skill: SkillSettings = SkillSettings()
    notify: NotifySettings = NotifySettings()
    metrics: MetricsSettings = MetricsSettings()
    journal: JournalSettings = JournalSettings()
    logging: LoggingSettings = LoggingSettings()

    # Secrets: environment or .env only, never YAML, never logged.
    alpaca_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("ALPACA_API_KEY"))
    alpaca_secret_key: SecretStr | None = Field(None, validation_alias=AliasChoices("ALPACA_SECRET_KEY"))
    hf_token: SecretStr | None = Field(None, validation_alias=AliasChoices("HF_TOKEN"))
    forecaster_token: SecretStr | None = Field(None, validation_alias=AliasChoices("KRONOS_BOT_FORECASTER_TOKEN"))
    live_trading_confirm: SecretStr | None = Field(None, validation_alias=AliasChoices("KRONOS_BOT_LIVE_TRADING"))
    # Apprise URLs, comma or space separated (they carry tokens: secrets).
    notify_urls: SecretStr | None = Field(None, validation_alias=AliasChoices("KRONOS_BOT_NOTIFY_URLS"))
    # Bearer token for the trader's /metrics (required when metrics.host is not a loopback address).
    metrics_token: SecretStr | None = Field(None, validation_alias=AliasChoices("KRONOS_BOT_METRICS_TOKEN"))
    # Which file was read; accepted here so KRONOS_BOT_CONFIG may live in .env. Not a setting.
    config_file: str | None = Field(None, validation_alias=AliasChoices("KRONOS_BOT_CONFIG"), exclude=True)
    # The YAML files load_settings merged, in order, and which of them set each key last (key path ->
    # file): private, so neither the fingerprint nor the printed config depends on where a value was written.
    _config_files: tuple[Path, ...] = PrivateAttr(default=())
    _config_origins: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    @field_validator(*SECRET_FIELDS, mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        """`ALPACA_API_KEY=` (as in .env.example) means "not set", not an empty key."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols_form(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is needed")
        for symbol in value:
            if not _SYMBOL_RE.match(symbol):
                raise ValueError(f"{symbol!r} is not in BASE/USD form (e.g. BTC/USD)")
        if len(set(value)) != len(value):
            raise ValueError("symbols are listed more than once")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        # Each message starts with the key it blames ("section.key: reason"): the error names that key.
        if self.bars.count > self.forecaster.max_context:
            raise ValueError(
                f"bars.count: {self.bars.count} exceeds forecaster.max_context ({self.forecaster.max_context})"
            )
        if self.bars.count < self.gates.technical.macd_slow + self.gates.technical.macd_signal:
            raise ValueError("bars.count: too short for the MACD periods (needs macd_slow + macd_signal)")
        if self.metrics.enabled and not is_loopback(self.metrics.host) and self.metrics_token is None:
            raise ValueError(
                f"metrics.host: {self.metrics.host} is reachable from outside: set KRONOS_BOT_METRICS_TOKEN "
                "(scrapers send it as a bearer token), or bind 127.0.0.1, or set metrics.enabled: false"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = InitSettingsSource(settings_cls, init_kwargs=_YAML_DATA.get({}))
        return (init_settings, env_settings, dotenv_settings, yaml_source)

    # ----- helpers used across the bot -----

    def notify_url_list(self) -> list[str]:
        """KRONOS_BOT_NOTIFY_URLS split on commas and whitespace (empty when unset)."""
        raw = self.notify_urls.get_secret_value() if self.notify_urls is not None else ""
        return [u for u in re.split(r"[\s,]+", raw) if u]

    @property
    def config_files(self) -> tuple[Path, ...]:
        """The YAML files this was loaded from, base first (empty when built without `load_settings`)."""
        return self._config_files

    @property
    def has_alpaca_keys(self) -> bool:
        return bool(self.alpaca_api_key and self.alpaca_secret_key)

    def effective_broker(self) -> Literal["alpaca", "sim"]:
        """`auto` resolves to Alpaca paper when keys are present, otherwise the simulated broker."""
        if self.broker.kind == "auto":
            return "alpaca" if self.has_alpaca_keys else "sim"
        return self.broker.kind

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data with every secret replaced by a marker."""
        data = self.model_dump(mode="json")
        data.pop("config_file", None)
        for name in SECRET_FIELDS:
            data[name] = "**********" if getattr(self, name) is not None else None
        return data

    def fingerprint(self) -> str:
        """A short hash of the non-secret config, journaled with every decision to tie it to its thresholds."""
        data = self.model_dump(mode="json", exclude=set(SECRET_FIELDS))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


# The YAML of the load in progress, for the settings source (no default: `.get({})` outside a load).
_YAML_DATA: ContextVar[dict[str, Any]] = ContextVar("_YAML_DATA")


class ConfigError(Exception):
    """A configuration problem: names the file, the key path and the reason, one line each.

    `blame` maps a problem's key to the file(s) that set it, for loads of several files: the header then
    lists all of them and each such line starts with its own file(s), so the user edits the right one.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]], blame: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.problems = problems
        self.blame = dict(blame or {})
        lines = [f"invalid configuration ({source}):"]
        for key, reason in problems:
            where = f"{self.blame[key]}: " if key in self.blame else ""
            lines.append(f"  {where}{key}: {reason}")
        super().__init__("\n".join(lines))


# The CLI's last line under a ConfigError; commands that refuse after loading (journal checks) print it too.
START_REFUSED = "refusing to start; fix the configuration and try again."


# One path (as before), the list of a repeated --config, or None for "not given".
ConfigPaths: TypeAlias = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


def resolve_config_paths(explicit: ConfigPaths) -> list[Path]:
    """--config (one path or several, in order), else $KRONOS_BOT_CONFIG (environment, then .env), else
    config/bot.yaml. Empty entries count as not given, as an empty single --config always did."""
    given = [explicit] if isinstance(explicit, str | os.PathLike) else list(explicit or [])
    paths = [Path(entry) for entry in given if entry]
    if paths:
        return paths
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if not from_env and Path(".env").is_file():
        from_env = dotenv_values(".env").get(CONFIG_ENV_VAR)
    return [Path(from_env) if from_env else DEFAULT_CONFIG_PATH]


def resolve_config_path(explicit: ConfigPaths) -> Path:
    """The base config file: the first of resolve_config_paths (the only one unless overlays are given)."""
    return resolve_config_paths(explicit)[0]


def config_source_label(paths: Sequence[str | os.PathLike[str]]) -> str:
    """How errors and `config check` name a load: the files in merge order, joined by ' + '."""
    return " + ".join(str(path) for path in paths)


def _normal_key(name: str) -> str:
    """Key spelling that ignores case and `-` vs `_`, so `Alpaca-Secret-Key` is caught like `ALPACA_SECRET_KEY`."""
    return name.casefold().replace("-", "_")


def secret_key_names() -> dict[str, str]:
    """Every name a secret may be written under (normalised) -> the environment variable that carries it.

    Derived from the Settings fields in SECRET_FIELDS and their validation aliases, so a secret added there
    is refused in the YAML without a second list to keep in step; only Alpaca's SDK names are added by hand.
    """
    names: dict[str, str] = {}
    for field in SECRET_FIELDS:
        alias = Settings.model_fields[field].validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []
        env_names = [choice for choice in choices if isinstance(choice, str)]
        carrier = env_names[0] if env_names else field.upper()
        for name in (field, *env_names):
            names[_normal_key(name)] = carrier
    for foreign, field in FOREIGN_SECRET_NAMES.items():
        names[_normal_key(foreign)] = names[_normal_key(field)]
    return names


def _secrets_in(data: Any, names: dict[str, str], prefix: str = "") -> list[tuple[str, str]]:
    """(key path as written, carrier variable) for every secret-named key at any depth; values never read."""
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        items: list[tuple[str, Any]] = [(str(key), value) for key, value in data.items()]
    elif isinstance(data, list):
        items = [(str(index), value) for index, value in enumerate(data)]
    else:
        return found
    for key, value in items:
        carrier = names.get(_normal_key(key))  # list indices never match a name
        if carrier is not None:
            found.append((prefix + key, carrier))
        else:
            found += _secrets_in(value, names, f"{prefix}{key}.")
    return found


def _read_yaml(path: Path, overlay_of: Path | None = None) -> dict[str, Any]:
    """One file's mapping, refused (naming that file) when missing, unreadable, empty or holding a secret.

    `overlay_of` is the base file when `path` is layered over it: the error then says so, because "not
    found" for a file the user thinks of as an add-on is easier to place with the base beside it.
    """
    source = str(path) if overlay_of is None else f"{path}, overlay on {overlay_of}"
    if not path.exists():
        raise ConfigError(source, [("(file)", "not found")])
    if not path.is_file():
        raise ConfigError(source, [("(file)", "is not a regular file")])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(source, [("(syntax)", str(exc).replace("\n", " "))]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [("(file)", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from exc
    except OSError as exc:
        raise ConfigError(source, [("(file)", exc.strerror or str(exc))]) from exc
    if data is None:
        # An empty, truncated or all-comments file is far likelier an accident than a wish for the defaults
        # (which `{}` still states explicitly); for an overlay, than a wish to change nothing.
        hint = "start from config/bot.yaml" if overlay_of is None else "an overlay lists the keys it changes"
        raise ConfigError(source, [("(file)", f"is empty (no settings, only comments or null); {hint}")])
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", "must be a mapping of sections")])
    leaked = _secrets_in(data, secret_key_names())
    if leaked:
        raise ConfigError(
            source,
            [
                (key, f"secrets belong in the environment or .env (as {carrier}), not in the YAML file")
                for key, carrier in leaked
            ],
        )
    return data


def merge_layers(layers: Sequence[Mapping[Any, Any]]) -> dict[Any, Any]:
    """Deep-merge config mappings, later ones winning key by key; the inputs are not modified.

    A mapping over a mapping merges recursively, so an overlay names only the keys it changes; anything
    else (a list, a scalar, null, or a mapping over a non-mapping) replaces the earlier value whole: a
    symbols list in an overlay is the new list, not extra symbols.
    """
    merged: dict[Any, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for layer in layers:
        _merge_into(merged, layer, "", origins, ())
    return merged


def _merge_into(
    target: dict[Any, Any],
    overlay: Mapping[Any, Any],
    source: str,
    origins: dict[tuple[str, ...], str],
    prefix: tuple[str, ...],
) -> None:
    """Merge `overlay` into `target` in place, recording in `origins` which source set each leaf last."""
    for key, value in overlay.items():
        # Top-level names are matched like the settings model matches them (case-insensitively), so
        # `Risk:` in an overlay changes the base's `risk:` instead of sitting beside it; sections below are
        # case-sensitive models, where a differently spelled key is an unknown key either way.
        if not prefix:
            key = next((k for k in target if str(k).lower() == str(key).lower()), key)
        path = (*prefix, str(key))
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge_into(current, value, source, origins, path)
            continue
        for stale in [p for p in origins if p[: len(path)] == path]:
            del origins[stale]
        if isinstance(value, Mapping) and value:
            target[key] = {}
            _merge_into(target[key], value, source, origins, path)
        else:
            # Lists are replaced whole and copied, so the merged data shares nothing with the layers.
            target[key] = copy.deepcopy(value) if isinstance(value, list | Mapping) else value
            origins[path] = source


def _blame(
    key: str,
    reason: str,
    origins: Mapping[tuple[str, ...], str],
    order: Sequence[str],
    overrides: Mapping[str, Any] | None = None,
) -> str | None:
    """The file(s) to fix for one problem: the file that set `key` (or the value holding it) last, plus
    any later file that set a key the reason compares it with; None when only defaults, the environment or
    an explicit override are involved, since no file is then the place to fix it.

    The partners matter because a check between two keys reports the one it validates: an overlay that
    lowers `engine.tiers.triple_confirmed` is refused as `engine.tiers.kronos_only`, which the base set.
    Only later partners count: a value checked against what earlier files established is the one to fix.
    A partner is named in the reason by its full dotted path, or by its bare name within the same section.
    """
    parts = tuple(key.split("."))
    if parts[0] in (overrides or {}) or _env_override_for(key):
        return None
    rank = {name: index for index, name in enumerate(order)}
    files: set[str] = set()
    owner_rank = -1  # the key came from the defaults: every file that set a partner is later
    for depth in range(len(parts), 0, -1):
        if parts[:depth] in origins:
            files.add(origins[parts[:depth]])
            owner_rank = rank[origins[parts[:depth]]]
            break
    said = reason.split(" (got ")[0]  # the rejected value is the user's text, not a reference to a key
    for path, source in origins.items():
        if path[: len(parts)] == parts or rank[source] <= owner_rank or _env_override_for(".".join(path)):
            continue
        names = [".".join(path)] + ([path[-1]] if path[:-1] == parts[:-1] else [])
        if any(re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", said) for name in names):
            files.add(source)
    return config_source_label([name for name in order if name in files]) if files else None


def _env_override_for(key_path: str) -> str | None:
    """The environment variable that set this key (or its section), so errors point at the right place."""
    parts = key_path.upper().split(".")
    env_names = {name.upper(): name for name in os.environ}
    for depth in range(len(parts), 0, -1):
        candidate = ENV_PREFIX + ENV_DELIMITER.join(parts[:depth])
        if candidate in env_names:
            return env_names[candidate]
    return None


# "Value error, bars.count: exceeds ..." from a model validator -> key bars.count, reason "exceeds ...".
_CROSS_CHECK_RE = re.compile(r"^Value error, (?P<key>[a-z_]+(?:\.[a-z_]+)+): (?P<reason>.*)$", re.S)


def _format_validation_error(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join(loc) if loc else "(top level)"
        reason = err["msg"]
        named = _CROSS_CHECK_RE.match(reason) if not loc else None
        if named:  # a check across sections names the key it blames (see Settings._cross_checks)
            problems.append((named["key"], named["reason"]))
            continue
        if err["type"] == "finite_number":  # pydantic's own text does not say what was wrong with `inf`
            reason = "Input should be a finite number, not infinity or NaN"
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif "input" in err and err["type"] not in ("missing",) and not any(s in key for s in SECRET_FIELDS):
            reason = f"{reason} (got {err['input']!r})"
        env_name = _env_override_for(key) if loc else None
        if env_name:
            reason = f"{reason} [set by environment variable {env_name}]"
        problems.append((key, reason))
    return problems


def load_settings(path: ConfigPaths = None, **overrides: Any) -> Settings:
    """Read, merge and validate the configuration; raises ConfigError naming file, key and reason.

    `path` is one file or several (base first, overlays after); every file is checked on its own before
    the merge (see `merge_layers`), and only the merged result is validated. With several files each
    error line names the file that set the key last, so a bad overlay is not mistaken for a bad base.
    """
    paths = resolve_config_paths(path)
    merged: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for index, config_path in enumerate(paths):
        layer = _read_yaml(config_path, overlay_of=paths[0] if index else None)
        _merge_into(merged, layer, str(config_path), origins, ())
    token = _YAML_DATA.set(merged)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = _format_validation_error(exc)
        blame: dict[str, str] = {}
        if len(paths) > 1:
            for key, reason in problems:
                culprit = _blame(key, reason, origins, [str(p) for p in paths], overrides)
                if culprit is not None:
                    blame[key] = culprit
        raise ConfigError(config_source_label(paths), problems, blame) from None
    finally:
        _YAML_DATA.reset(token)
    settings._config_files = tuple(paths)
    settings._config_origins = origins
    return settings


def _who() -> str:
    """The user the checks were made for, so "not writable" says by whom (a service user is often not you)."""
    uid = os.getuid()
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def journal_path_problem(path: str) -> str | None:
    """Why the journal file at `path` cannot be used, or None when it can; creates and changes nothing.

    The journal is SQLite in WAL mode, so it needs the file readable and writable and its directory writable
    too (SQLite creates `-wal` and `-shm` files beside it); `Journal()` creates a missing directory, which
    works when the nearest existing ancestor is writable. Checked up front because the alternative is a raw
    sqlite/OSError traceback from deep inside start-up. Uses os.access (real uid; read-only mounts count),
    so for root only a read-only filesystem or something in the way (a file where a directory belongs, a
    directory where the file belongs) is a problem. A pseudo-filesystem that refuses mkdir even to root
    (/proc, /sys) passes: only trying would tell, and this check must not create anything.
    """
    if path == ":memory:":
        return None
    if not path.strip():
        return "is empty; give the journal's file path (e.g. var/kronos-bot.sqlite)"
    if path.endswith(("/", os.sep)):
        return "ends with a slash; give the path of a file (e.g. var/kronos-bot.sqlite)"
    if os.path.isdir(path):
        return f"{os.path.abspath(path)} is a directory; give the path of a file inside it"
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    existing = directory  # the nearest ancestor that exists: where Journal() would start creating directories
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if existing == directory:
        subject = f"its directory {directory}"
    else:
        subject = f"its directory {directory} does not exist and cannot be created: {existing}"
    if not os.path.isdir(existing):
        return f"{subject} is not a directory"
    if not os.access(existing, os.W_OK):
        return f"{subject} is not writable by {_who()}"
    if not os.access(existing, os.X_OK):
        return f"{subject} is not searchable (no x permission) by {_who()}"
    if os.path.exists(target):
        if not os.path.isfile(target):
            return f"{target} exists and is not a regular file"
        if not os.access(target, os.R_OK | os.W_OK):
            return f"the file {target} exists but is not readable and writable by {_who()}"
    return None


def check_journal_path(settings: Settings, config_path: ConfigPaths) -> None:
    """Raise ConfigError(journal.path: reason) when the journal cannot be used, for commands that write it.

    Not part of load_settings, which every command runs: the commands that only read (status, decisions,
    backtest) must not be refused over a journal they never write. `config check`, `run` and `once` call it
    before anything is built, so the refusal reads like every other configuration error.
    """
    reason = journal_path_problem(settings.journal.path)
    if reason is None:
        return
    reason = f"{reason} (got {settings.journal.path!r})"
    env_name = _env_override_for("journal.path")
    if env_name:
        reason = f"{reason} [set by environment variable {env_name}]"
    paths = settings.config_files or tuple(resolve_config_paths(config_path))
    order = [str(path) for path in paths]
    culprit = _blame("journal.path", reason, settings._config_origins, order) if len(paths) > 1 else None
    blame = {"journal.path": culprit} if culprit else None
    raise ConfigError(config_source_label(paths), [("journal.path", reason)], blame)
