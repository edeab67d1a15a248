"""Random-weight Kronos-small / Tokenizer-base models and checkpoints, for benchmarks only.

Speed depends on shapes, not values, so benchmarks build models with the published configs and random
weights: no download, no network. Never used to serve forecasts (loading always needs real files).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from .config import PredictorConfig, TokenizerConfig, parse_config
from .hub import CONFIG_FILE, WEIGHTS_FILE
from .model import KronosPredictorModel, KronosTokenizer
from .weights import build_empty, random_init

# The published config.json contents (SPEC.md).
KRONOS_SMALL_CONFIG: dict[str, object] = {
    "attn_dropout_p": 0.1,
    "d_model": 512,
    "ff_dim": 1024,
    "ffn_dropout_p": 0.25,
    "learn_te": True,
    "n_heads": 8,
    "n_layers": 8,
    "resid_dropout_p": 0.25,
    "s1_bits": 10,
    "s2_bits": 10,
    "token_dropout_p": 0.1,
}
TOKENIZER_BASE_CONFIG: dict[str, object] = {
    "attn_dropout_p": 0.0,
    "beta": 0.05,
    "d_in": 6,
    "d_model": 256,
    "ff_dim": 512,
    "ffn_dropout_p": 0.0,
    "gamma": 1.1,
    "gamma0": 1.0,
    "group_size": 4,
    "n_dec_layers": 4,
    "n_enc_layers": 4,
    "n_heads": 4,
    "resid_dropout_p": 0.0,
    "s1_bits": 10,
    "s2_bits": 10,
    "zeta": 0.05,
}


def random_models(seed: int = 0, device: str = "cpu") -> tuple[KronosPredictorModel, KronosTokenizer]:
    """Kronos-small predictor + Tokenizer-base tokenizer with random weights."""
    model_config = parse_config(PredictorConfig, KRONOS_SMALL_CONFIG, "Kronos-small config")
    tokenizer_config = parse_config(TokenizerConfig, TOKENIZER_BASE_CONFIG, "Kronos-Tokenizer-base config")
    model = build_empty(lambda: KronosPredictorModel(model_config), device)
    tokenizer = build_empty(lambda: KronosTokenizer(tokenizer_config), device)
    random_init(model, seed)
    random_init(tokenizer, seed + 1)
    return model, tokenizer


def write_random_checkpoints(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write `model/` and `tokenizer/` checkpoint directories (config.json + model.safetensors).

    Returns (model_dir, tokenizer_dir), loadable with `load_forecaster(model_dir, tokenizer_dir,
    verify=False)`.
    """
    root = Path(directory)
    model, tokenizer = random_models(seed)
    dirs = []
    parts = (("model", model, KRONOS_SMALL_CONFIG), ("tokenizer", tokenizer, TOKENIZER_BASE_CONFIG))
    for name, module, config in parts:
        target = root / name
        target.mkdir(parents=True, exist_ok=True)
        (target / CONFIG_FILE).write_text(json.dumps(config, sort_keys=True, indent=2) + "\n", encoding="utf-8")
        tensors = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
        save_file(tensors, str(target / WEIGHTS_FILE))
        dirs.append(target)
    return dirs[0], dirs[1]
