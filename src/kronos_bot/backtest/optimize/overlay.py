"""A sampled combination as a config overlay, and the settings it makes, validated like the daemon's.

Why validate through `Settings.model_validate` of the whole merged config (and not only the sampled
fields): some rules span fields and sections (`engine.tiers.kronos_only` <= `triple_confirmed`,
`rsi_max` > `rsi_min`, the MACD periods against `bars.count`), and a best trial the daemon would refuse
to start with is worth nothing. `model_validate` (not the constructor) so the environment cannot
override a sampled value behind the study's back; secrets are carried over untouched, never dumped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kronos_bot.config import SECRET_FIELDS, Settings, merge_layers


class InvalidCombination(ValueError):
    """A combination the settings model refuses; the message names each key and its reason."""


def nest(params: Mapping[str, Any]) -> dict[str, Any]:
    """{"gates.kronos.min_confidence": 0.6} -> {"gates": {"kronos": {"min_confidence": 0.6}}}."""
    out: dict[str, Any] = {}
    for path, value in params.items():
        node = out
        *sections, key = path.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return out


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overlay` merged in key by key: the same rule as repeated `--config` files, so
    best.yaml validated here is what `config check --config bot.yaml --config best.yaml` sees."""
    return merge_layers([base, overlay])


def value_at(settings: Settings, path: str) -> Any:
    node: Any = settings
    for part in path.split("."):
        node = getattr(node, part)
    return node


def _reasons(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        parts.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def apply(settings: Settings, params: Mapping[str, Any]) -> Settings:
    """`settings` with `params` (key path -> value) applied; InvalidCombination when the model refuses."""
    data = settings.model_dump(exclude=set(SECRET_FIELDS))
    try:
        validated = Settings.model_validate(merge(data, nest(params)))
    except ValidationError as exc:
        raise InvalidCombination(_reasons(exc)) from None
    return validated.model_copy(update={name: getattr(settings, name) for name in SECRET_FIELDS})


def changed(settings: Settings, params: Mapping[str, Any]) -> dict[str, Any]:
    """The nested overlay of only those `params` whose value differs from `settings`' own."""
    return nest({path: value for path, value in params.items() if value_at(settings, path) != value})
