"""The settings a backtest runs with: the loaded config plus the command-line overrides.

Why a copy with overrides instead of new config keys: `--samples`, `--seed`, `--fee-percent`... are
experiment knobs, and every other threshold must come from the very config the daemon reads. Each
overridden section is re-validated by its own pydantic model, so a bad value fails like a bad YAML value.
The broker is always the simulated one, and a seed is always set (an unseeded Kronos forecast is not
reproducible, and could not be cached).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from kronos_bot.config import BrokerSettings, GatesSettings, KronosGateSettings, Settings, SimBrokerSettings
from kronos_bot.domain import parse_symbol

DEFAULT_SEED = 0


def _section(model: type[BaseModel], current: Any, **changes: Any) -> Any:
    changes = {k: v for k, v in changes.items() if v is not None}
    return model.model_validate({**current.model_dump(), **changes}) if changes else current


def backtest_settings(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    samples: int | None = None,
    seed: int | None = None,
    fee_percent: float | None = None,
    slippage_bps: float | None = None,
    starting_cash: float | None = None,
) -> Settings:
    """`settings` with the overrides applied, the sim broker forced and a Kronos seed guaranteed."""
    kronos_seed = (
        seed
        if seed is not None
        else (settings.gates.kronos.seed if settings.gates.kronos.seed is not None else DEFAULT_SEED)
    )
    kronos = _section(KronosGateSettings, settings.gates.kronos, samples=samples, seed=kronos_seed)
    gates = settings.gates.model_copy(update={"kronos": kronos})
    GatesSettings.model_validate(gates.model_dump())
    sim = _section(
        SimBrokerSettings,
        settings.broker.sim,
        fee_percent=fee_percent,
        slippage_bps=slippage_bps,
        starting_cash=starting_cash,
    )
    broker = _section(BrokerSettings, settings.broker, kind="sim", live=False)
    broker = broker.model_copy(update={"sim": sim})
    out = settings.model_copy(update={"gates": gates, "broker": broker})
    if symbols:
        # Runs the `symbols` field validator (BASE/USD form, no duplicates) on the copy only.
        Settings.__pydantic_validator__.validate_assignment(out, "symbols", [parse_symbol(s) for s in symbols])
    return out
