"""Our own inference-only Kronos (tokenizer + predictor), checkpoint-compatible with the published weights.

Modules: `config` (strict config.json parsing), `model` (torch modules), `weights` (strict safetensors
loading), `hub` (pinned, sha256-verified checkpoint files; torch-free), `generate` (batched cached
sampling), `predictor` (`KronosPredictor`, the `Forecaster`, and `load_forecaster`).

Names are exported lazily so that importing `kronos_bot.kronos.hub` (e.g. to look up a tokenizer pair)
does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "KronosPredictor": "predictor",
    "load_forecaster": "predictor",
    "ModelLoadError": "hub",
    "ChecksumMismatchError": "hub",
    "resolve_checkpoint": "hub",
    "KNOWN_CHECKPOINTS": "hub",
    "DEFAULT_MODEL": "hub",
    "DEFAULT_TOKENIZER": "hub",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
