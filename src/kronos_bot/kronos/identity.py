"""What identifies a Kronos forecaster -- checkpoints, configs, device, threads -- known without torch.

Why torch-free: this identity keys every forecast cache (`gates.forecast_cache.model_fingerprint`). A
backtest or evaluation whose forecasts are all cached needs the key but never the model, so resolving
and verifying the checkpoint files here lets it skip importing torch and building the model (seconds
per run); `KronosPredictor.model_info` reports the very same dictionary once a model is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import KronosConfigError, PredictorConfig, TokenizerConfig, config_to_dict, load_config
from .hub import KNOWN_CHECKPOINTS, CheckpointFiles, ModelLoadError, paired_tokenizer, resolve_checkpoint

BACKEND = "kronos_bot.kronos"


SAMPLING_SCHEME = "per-series-stream-1"


def forecaster_identity(
    checkpoints: Mapping[str, object],
    model_config: Mapping[str, Any],
    tokenizer_config: Mapping[str, Any],
    device: str,
    threads: int,
) -> dict[str, object]:
    """The model_info of a forecaster built from these checkpoints and configs on `device` with `threads`."""
    return {
        "backend": BACKEND,
        **checkpoints,
        "model_config": dict(model_config),
        "tokenizer_config": dict(tokenizer_config),
        "device": device,
        "threads": threads,
        # How paths are sampled (one stream per series, `predictor.stream_seed`): part of every cache key,
        # so forecasts sampled another way are never taken for these.
        "sampling_scheme": SAMPLING_SCHEME,
    }


@dataclass(frozen=True)
class ResolvedCheckpoints:
    """A predictor and its tokenizer, resolved to verified local files."""

    model: CheckpointFiles
    tokenizer: CheckpointFiles
    max_context: int | None  # the model's published context limit, when it is a known checkpoint

    def info(self) -> dict[str, object]:
        return {"model": self.model.info(), "tokenizer": self.tokenizer.info(), "max_context": self.max_context}

    def identity(self, device: str, threads: int) -> dict[str, object]:
        """What `KronosPredictor.model_info()` will report once these files are loaded (configs parsed here)."""
        configs = [
            _parsed(self.model, "predictor", lambda path: config_to_dict(load_config(PredictorConfig, path))),
            _parsed(self.tokenizer, "tokenizer", lambda path: config_to_dict(load_config(TokenizerConfig, path))),
        ]
        return forecaster_identity(self.info(), configs[0], configs[1], device, threads)


def resolve_checkpoints(
    model: str,
    tokenizer: str | None = None,
    *,
    model_revision: str | None = None,
    tokenizer_revision: str | None = None,
    cache_dir: str | Path | None = None,
    verify: bool = True,
    local_files_only: bool | None = None,
    model_sha256: tuple[str, str] | None = None,
    tokenizer_sha256: tuple[str, str] | None = None,
    progress: bool | None = None,
) -> ResolvedCheckpoints:
    """Resolve (download if allowed) and verify both checkpoints; see `predictor.load_forecaster`."""
    if tokenizer is None:
        tokenizer = paired_tokenizer(model)
        if tokenizer is None:
            raise ModelLoadError(f"no known tokenizer pairs with {model!r}; pass tokenizer= explicitly")
    common: dict[str, Any] = {
        "cache_dir": cache_dir,
        "verify": verify,
        "local_files_only": local_files_only,
        "progress": progress,
    }
    model_files = resolve_checkpoint(
        model,
        revision=model_revision,
        config_sha256=model_sha256[0] if model_sha256 else None,
        weights_sha256=model_sha256[1] if model_sha256 else None,
        **common,
    )
    tokenizer_files = resolve_checkpoint(
        tokenizer,
        revision=tokenizer_revision,
        config_sha256=tokenizer_sha256[0] if tokenizer_sha256 else None,
        weights_sha256=tokenizer_sha256[1] if tokenizer_sha256 else None,
        **common,
    )
    known = KNOWN_CHECKPOINTS.get(model)
    return ResolvedCheckpoints(model_files, tokenizer_files, known.max_context if known else None)


def _parsed(files: CheckpointFiles, what: str, parse: Callable[[Path], dict[str, object]]) -> dict[str, object]:
    """One checkpoint's config.json as `config_to_dict` gives it, or the loader's error wording."""
    try:
        return parse(Path(files.config_path))
    except KronosConfigError as exc:
        # Worded as the loader words it (`predictor._load_module`).
        raise ModelLoadError(f"cannot load {what} {files.source}: {exc}") from exc
