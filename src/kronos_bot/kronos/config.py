"""Typed configs for the Kronos tokenizer and predictor, parsed strictly from a checkpoint's config.json.

A published checkpoint's `config.json` holds exactly the reference constructor arguments. We parse it
into frozen dataclasses and refuse anything we do not understand (unknown key, missing key, wrong type,
inconsistent sizes): a silently ignored key could mean a different architecture whose weights would
still load but compute something else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar


class KronosConfigError(ValueError):
    """A config.json that does not describe a Kronos model this code can run."""


# The dependency-aware layer of the reference always uses 4 heads, whatever n_heads says.
DEP_LAYER_HEADS = 4


@dataclass(frozen=True)
class TokenizerConfig:
    """Constructor arguments of the Kronos tokenizer (BSQ autoencoder over normalized OHLCV)."""

    d_in: int
    d_model: int
    n_heads: int
    ff_dim: int
    n_enc_layers: int
    n_dec_layers: int
    s1_bits: int
    s2_bits: int
    # Training-only: kept so that the config round-trips and is reported, never used at inference.
    attn_dropout_p: float
    ffn_dropout_p: float
    resid_dropout_p: float
    beta: float
    gamma0: float
    gamma: float
    zeta: float
    group_size: int

    @property
    def codebook_dim(self) -> int:
        return self.s1_bits + self.s2_bits

    @property
    def n_encoder_blocks(self) -> int:
        """The reference builds n_enc_layers - 1 encoder blocks (the embed layer counts as one)."""
        return self.n_enc_layers - 1

    @property
    def n_decoder_blocks(self) -> int:
        return self.n_dec_layers - 1

    def _check(self, source: str) -> None:
        _positive(
            self,
            source,
            "d_in",
            "d_model",
            "n_heads",
            "ff_dim",
            "n_enc_layers",
            "n_dec_layers",
            "s1_bits",
            "s2_bits",
            "group_size",
        )
        _check_heads(self.d_model, self.n_heads, source)
        _check_bits(self.s1_bits, self.s2_bits, source)


@dataclass(frozen=True)
class PredictorConfig:
    """Constructor arguments of the Kronos decoder-only predictor."""

    s1_bits: int
    s2_bits: int
    n_layers: int
    d_model: int
    n_heads: int
    ff_dim: int
    learn_te: bool
    # Training-only.
    attn_dropout_p: float
    ffn_dropout_p: float
    resid_dropout_p: float
    token_dropout_p: float

    def _check(self, source: str) -> None:
        _positive(self, source, "s1_bits", "s2_bits", "n_layers", "d_model", "n_heads", "ff_dim")
        _check_heads(self.d_model, self.n_heads, source)
        if self.d_model % (2 * DEP_LAYER_HEADS) != 0:
            raise KronosConfigError(
                f"{source}: d_model={self.d_model} must be divisible by {2 * DEP_LAYER_HEADS} "
                f"(the dependency-aware layer has {DEP_LAYER_HEADS} heads of even size)"
            )
        _check_bits(self.s1_bits, self.s2_bits, source)
        if not self.learn_te:
            raise KronosConfigError(
                f"{source}: learn_te=false (fixed sinusoidal time embedding) is not used by any published "
                "Kronos checkpoint and is not supported"
            )


ConfigT = TypeVar("ConfigT", TokenizerConfig, PredictorConfig)


def parse_config(cls: type[ConfigT], data: object, source: str = "config") -> ConfigT:
    """Build `cls` from a decoded config.json mapping; every key required, no extra key allowed."""
    if not isinstance(data, dict):
        raise KronosConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    missing = sorted(set(names) - set(data))
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unknown:
            parts.append(f"unknown keys {unknown}")
        raise KronosConfigError(f"{source}: not a Kronos {cls.__name__}: " + "; ".join(parts))
    values: dict[str, Any] = {}
    for f in fields(cls):
        values[f.name] = _coerce(data[f.name], f.type, f.name, source)
    config = cls(**values)
    config._check(source)
    return config


def load_config(cls: type[ConfigT], path: str | Path) -> ConfigT:
    """Read and parse a config.json file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KronosConfigError(f"{path}: cannot read config: {exc}") from exc
    return parse_config(cls, data, str(path))


def config_to_dict(config: TokenizerConfig | PredictorConfig) -> dict[str, object]:
    """The config as the JSON mapping it came from (sorted keys, like the published files)."""
    return {f.name: getattr(config, f.name) for f in sorted(fields(config), key=lambda f: f.name)}


def _coerce(value: object, type_name: object, key: str, source: str) -> object:
    # `from __future__ import annotations` makes field types strings.
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise KronosConfigError(f"{source}: key {key!r} must be {kind}, got {value!r}")


def _positive(config: object, source: str, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise KronosConfigError(f"{source}: {name} must be positive, got {getattr(config, name)}")


def _check_heads(d_model: int, n_heads: int, source: str) -> None:
    if d_model % n_heads != 0 or (d_model // n_heads) % 2 != 0:
        raise KronosConfigError(
            f"{source}: d_model={d_model} must split into n_heads={n_heads} heads of even size (RoPE halves)"
        )


def _check_bits(s1_bits: int, s2_bits: int, source: str) -> None:
    # Token ids are int64 bit sums; 2^bits-row embedding tables beyond 2^20 are not a real checkpoint.
    if s1_bits > 20 or s2_bits > 20:
        raise KronosConfigError(f"{source}: s1_bits={s1_bits}/s2_bits={s2_bits} are implausibly large")
