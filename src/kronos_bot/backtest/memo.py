"""Memoized bars validation and technical gate: the live pure functions, remembered on disk.

Why: `validate_bars` and `technical_gate` are pure, but pandas makes each call cost milliseconds, and a
6-month, 4-symbol replay calls each ~17,600 times -- minutes, on every re-run. Their results depend only
on their input window and their config section, so they are stored under
    namespace = hash(config section as JSON + the source file of the function's module)
    key       = the window (symbol, time, content hash of the raw bars; or the validated window's hash)
A re-run with other engine, sizing, exit or Kronos thresholds reuses everything; changing `bars:` or
`gates.technical:` settings, or editing `market/bars.py` / `gates/technical.py`, recomputes them. The
functions themselves are never re-implemented here: a miss calls them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pandas as pd
from pydantic import BaseModel

from kronos_bot.backtest.cache_store import CacheStore
from kronos_bot.backtest.data import RawWindow, frame_digest
from kronos_bot.config import BarsSettings, TechnicalSettings
from kronos_bot.domain import TechnicalResult, TechnicalVerdict
from kronos_bot.gates import technical as technical_module
from kronos_bot.gates.technical import technical_gate
from kronos_bot.market import bars as bars_module
from kronos_bot.market.bars import BarsProblem, validate_bars


def namespace(config: BaseModel, module: ModuleType) -> str:
    """Hash of a config section and of the source of the module whose pure function is memoized."""
    h = hashlib.sha256(config.model_dump_json().encode())
    h.update(Path(module.__file__ or "").read_bytes())
    return h.hexdigest()[:20]


class Memo:
    """One namespace of memoized values (in memory when there is no store)."""

    def __init__(self, store: CacheStore | None, kind: str, ns: str) -> None:
        self.store, self.kind, self.ns = store, kind, ns
        self._values: dict[str, str] = store.load(kind, ns) if store is not None else {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> str | None:
        value = self._values.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value: str) -> None:
        self._values[key] = value
        if self.store is not None:
            self.store.put(self.kind, self.ns, key, value)


@dataclass(frozen=True)
class CheckedWindow:
    """What `validate_bars` said about a raw window, without the bars (they are re-derived when needed)."""

    symbol: str
    now: datetime
    problem: BarsProblem | None = None
    digest: str = ""  # frame_digest of the validated window
    last_bar: datetime | None = None  # open time of its last bar
    count: int = 0
    last_close: float | None = None
    filled: tuple[datetime, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def problem_text(self) -> str:
        """As the live cycle words it in a `data_invalid` decision."""
        p = self.problem
        return "" if p is None else (f"{p.reason}: {p.detail}" if p.detail else p.reason)

    def to_json(self) -> str:
        if self.problem is not None:
            return json.dumps({"problem": [self.problem.reason, self.problem.detail]})
        assert self.last_bar is not None
        return json.dumps(
            {
                "digest": self.digest,
                "last_bar": self.last_bar.isoformat(),
                "count": self.count,
                "last_close": self.last_close,
                "filled": [t.isoformat() for t in self.filled],
            }
        )

    @classmethod
    def from_json(cls, symbol: str, now: datetime, text: str) -> CheckedWindow:
        data = json.loads(text)
        if "problem" in data:
            reason, detail = data["problem"]
            return cls(symbol, now, BarsProblem(symbol, reason, detail))
        return cls(
            symbol,
            now,
            None,
            data["digest"],
            datetime.fromisoformat(data["last_bar"]),
            int(data["count"]),
            float(data["last_close"]),
            tuple(datetime.fromisoformat(t) for t in data["filled"]),
        )


def check_window(raw: RawWindow, settings: BarsSettings) -> tuple[CheckedWindow, pd.DataFrame | None]:
    """Run the live `validate_bars` on a raw window: the verdict, and the validated bars when valid."""
    result = validate_bars(raw.symbol, raw.frame, raw.now, settings)
    if isinstance(result, BarsProblem):
        return CheckedWindow(raw.symbol, raw.now, result), None
    df = result.df
    checked = CheckedWindow(
        symbol=raw.symbol,
        now=raw.now,
        problem=None,
        digest=frame_digest(df),
        last_bar=df.index[-1].to_pydatetime(),
        count=len(df),
        last_close=float(df["close"].iloc[-1]),
        filled=tuple(result.filled),
    )
    return checked, df


class BarsMemo:
    """`check_window` remembered per (symbol, time, raw-window content) and `bars:` settings."""

    def __init__(self, store: CacheStore | None, settings: BarsSettings) -> None:
        self.settings = settings
        self.memo = Memo(store, "bars", namespace(settings, bars_module))

    def check(self, raw: RawWindow) -> tuple[CheckedWindow, pd.DataFrame | None]:
        """The verdict (from memory if known; then the frame is None and `frame()` re-derives it)."""
        key = f"{raw.symbol}|{raw.now.isoformat()}|{raw.digest}"
        known = self.memo.get(key)
        if known is not None:
            return CheckedWindow.from_json(raw.symbol, raw.now, known), None
        checked, frame = check_window(raw, self.settings)
        self.memo.put(key, checked.to_json())
        return checked, frame

    def frame(self, raw: RawWindow) -> pd.DataFrame:
        """The validated bars of a window known to be valid (validation re-run; it is pure)."""
        _, frame = check_window(raw, self.settings)
        if frame is None:
            raise RuntimeError(f"{raw.symbol} at {raw.now.isoformat()}: memoized as valid but fails validation now")
        return frame


def _technical_to_json(result: TechnicalResult) -> str:
    return json.dumps(asdict(result))


def _technical_from_json(text: str) -> TechnicalResult:
    data = json.loads(text)
    return TechnicalResult(**{**data, "verdict": TechnicalVerdict(data["verdict"])})


class TechnicalMemo:
    """`technical_gate` remembered per validated-window content and `gates.technical:` settings."""

    def __init__(self, store: CacheStore | None, settings: TechnicalSettings) -> None:
        self.settings = settings
        self.memo = Memo(store, "technical", namespace(settings, technical_module))

    def known(self, digest: str) -> TechnicalResult | None:
        text = self.memo.get(digest)
        return None if text is None else _technical_from_json(text)

    def compute(self, digest: str, frame: pd.DataFrame) -> TechnicalResult:
        result = technical_gate(frame, self.settings)
        self.memo.put(digest, _technical_to_json(result))
        return result
