"""The search space: a small YAML file mapping config key paths to ranges, as Optuna distributions.

Why key paths of the real config (`gates.kronos.min_confidence`) rather than names of our own: a best
trial must become a config overlay the daemon reads unchanged, so every dimension is resolved against the
Settings model up front, and its type and bounds are checked by that field's own validator. A typo, an
empty or inverted range, or a bound the field refuses would otherwise surface as thousands of pruned
trials; here it is one message naming the file, the key and the reason, before any forecast is computed.

File format (one entry per setting; `#` comments allowed):

    gates.kronos.min_confidence: {low: 0.5, high: 0.8}             # float, uniform
    gates.kronos.threshold_percent: {low: 0.0, high: 1.0, step: 0.05}
    risk.cooldown_minutes: {low: 0, high: 240, step: 15}            # int settings take whole numbers
    exits.trail_percent: {low: 0.5, high: 8.0, log: true}
    engine.require_technical_for_kronos_only: {choices: [false, true]}
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from kronos_bot.config import Settings

RANGE_KEYS = frozenset({"low", "high", "step", "log"})
CHOICE_KEYS = frozenset({"choices"})


class SpaceError(ValueError):
    """The search space file cannot be used; one line per problem, each naming the key path."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"invalid search space ({source}):"] + [f"  {key}: {reason}" for key, reason in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Dimension:
    """One searched setting: its dotted key path and the Optuna distribution its values come from."""

    path: str
    distribution: BaseDistribution


@dataclass(frozen=True)
class SearchSpace:
    source: str
    dimensions: tuple[Dimension, ...]

    @property
    def paths(self) -> list[str]:
        return [d.path for d in self.dimensions]


def resolve_field(path: str) -> FieldInfo:
    """The Settings field at `path` (sections descended by name); KeyError with the reason otherwise."""
    model: type[BaseModel] = Settings
    parts = path.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None or field.exclude or field.validation_alias is not None:
            known = ".".join(parts[:depth]) or "the top level"
            raise KeyError(f"unknown key path: {known} has no setting {part!r}")
        annotation = field.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth == len(parts) - 1:
            if is_section:
                raise KeyError("is a section, not a setting: name one of its keys")
            return field
        if not is_section:
            raise KeyError(f"unknown key path: {'.'.join(parts[: depth + 1])} is a setting, not a section")
        model = annotation  # type: ignore[assignment]
    raise KeyError("empty key path")  # pragma: no cover - split() never returns an empty list


def _kind(field: FieldInfo) -> str:
    """int, float, bool or choice (a Literal); anything else (strings, optional values) is not searched."""
    annotation = field.annotation
    if typing.get_origin(annotation) is Literal:
        return "choice"
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return "other"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "other"


def _field_check(field: FieldInfo, value: Any) -> str | None:
    """The field's own validation of one bound or choice: None when accepted, else pydantic's reason."""
    target: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(target)
    try:
        adapter.validate_python(value, strict=isinstance(value, bool))
    except ValidationError as exc:
        return f"{exc.errors()[0]['msg']} (got {value!r})"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range(path: str, field: FieldInfo, kind: str, spec: dict[str, Any]) -> BaseDistribution:
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), bool(spec.get("log", False))
    if low is None or high is None:
        raise ValueError("needs both low and high")
    if not (_is_number(low) and _is_number(high)) or (step is not None and not _is_number(step)):
        raise ValueError(f"low, high and step must be numbers (got low {low!r}, high {high!r}, step {step!r})")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise ValueError(f"is a whole-number setting: low, high and step must be whole numbers (got {low}, {high})")
    if low == high:
        raise ValueError(f"empty range (low = high = {low}): widen it, or drop the key to keep its configured value")
    if low > high:
        raise ValueError(f"inverted range (low {low} > high {high})")
    if step is not None and (step <= 0 or step > high - low):
        raise ValueError(f"step {step} must be > 0 and at most high - low ({high - low})")
    if log and (low <= 0 or step is not None):
        raise ValueError("log: true needs low > 0 and no step")
    for name, bound in (("low", low), ("high", high)):
        problem = _field_check(field, int(bound) if kind == "int" else float(bound))
        if problem:
            raise ValueError(f"{name}: the setting refuses it: {problem}")
    if kind == "int":
        return IntDistribution(int(low), int(high), step=int(step or 1), log=log)
    return FloatDistribution(float(low), float(high), step=None if step is None else float(step), log=log)


def _choices(field: FieldInfo, spec: dict[str, Any]) -> BaseDistribution:
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("choices must be a non-empty list")
    if len(choices) < 2:
        raise ValueError(f"empty range (one choice, {choices[0]!r}): add another, or drop the key")
    for choice in choices:
        problem = _field_check(field, choice)
        if problem:
            raise ValueError(f"choice refused by the setting: {problem}")
    return CategoricalDistribution(choices)


def dimension(path: str, spec: Any) -> Dimension:
    """One entry of the file as a Dimension; ValueError / KeyError with the reason (no key in it)."""
    field = resolve_field(path)
    kind = _kind(field)
    if kind == "other":
        raise ValueError(f"cannot be searched: only number, true/false and choice settings can ({field.annotation})")
    if not isinstance(spec, dict):
        raise ValueError("must be a mapping: {low: ..., high: ...} or {choices: [...]}")
    keys = set(spec)
    if keys & CHOICE_KEYS:
        if keys - CHOICE_KEYS:
            raise ValueError(f"choices cannot be mixed with {sorted(keys - CHOICE_KEYS)}")
        return Dimension(path, _choices(field, spec))
    unknown = keys - RANGE_KEYS
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}: use low, high, step, log or choices")
    if kind in ("bool", "choice"):
        raise ValueError("is a true/false or named-choice setting: give choices: [...] instead of a range")
    return Dimension(path, _range(path, field, kind, spec))


def parse_space(data: Any, source: str) -> SearchSpace:
    """The space from already-parsed YAML; SpaceError listing every problem at once."""
    if not isinstance(data, dict) or not data:
        raise SpaceError(source, [("(file)", "must be a non-empty mapping of config key paths to ranges")])
    problems: list[tuple[str, str]] = []
    dimensions: list[Dimension] = []
    for path, spec in data.items():
        try:
            dimensions.append(dimension(str(path), spec))
        except (KeyError, ValueError) as exc:
            problems.append((str(path), str(exc.args[0]) if exc.args else type(exc).__name__))
    if problems:
        raise SpaceError(source, problems)
    return SearchSpace(source, tuple(dimensions))


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate the search space file."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpaceError(str(file), [("(file)", exc.strerror or str(exc))]) from exc
    except yaml.YAMLError as exc:
        raise SpaceError(str(file), [("(syntax)", str(exc).replace("\n", " "))]) from exc
    return parse_space(data, str(file))
