"""Strict safetensors loading into our modules, plus random initialisation for benchmarks.

Strictness is the point: a checkpoint from another architecture or a truncated file must not load
"mostly". Every tensor the module needs must be present with the exact shape, and every tensor in the
file must be one we use, except the few the reference saves for training only. safetensors only: no
pickle is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .model import KronosTokenizer, Rotary

ModelT = TypeVar("ModelT", bound=nn.Module)


class WeightsError(ValueError):
    """A checkpoint file that does not match the model exactly; the message names the tensors."""


# Saved by the reference tokenizer but only used in training.
TOKENIZER_TRAINING_ONLY = ("tokenizer.bsq.basis", "tokenizer.bsq.group_basis")
TOKENIZER_TRAINING_ONLY_PREFIXES = ("post_quant_embed_pre.",)


def _ignorable(model: nn.Module, key: str) -> bool:
    if isinstance(model, KronosTokenizer):
        return key in TOKENIZER_TRAINING_ONLY or key.startswith(TOKENIZER_TRAINING_ONLY_PREFIXES)
    return False


def expected_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every persistent parameter and buffer of `model` by state-dict name."""
    return dict(model.state_dict(keep_vars=True))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Copy a safetensors file into `model` after checking names, shapes and dtypes; errors name tensors."""
    path = Path(path)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file: {exc}") from exc
    with handle as f:
        keys = set(f.keys())
        targets = expected_tensors(model)
        missing = sorted(set(targets) - keys)
        unexpected = sorted(k for k in keys - set(targets) if not _ignorable(model, k))
        problems: list[str] = []
        if missing:
            problems.append(f"missing tensors: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected tensors: {', '.join(unexpected)}")
        for name in sorted(set(targets) & keys):
            shape = tuple(f.get_slice(name).get_shape())
            want = tuple(targets[name].shape)
            if shape != want:
                problems.append(f"tensor {name} has shape {list(shape)}, expected {list(want)}")
        if problems:
            raise WeightsError(f"{path} does not match {type(model).__name__}: " + "; ".join(problems))
        with torch.no_grad():
            for name, target in targets.items():
                tensor = f.get_tensor(name)
                if not tensor.is_floating_point():
                    raise WeightsError(f"{path}: tensor {name} has dtype {tensor.dtype}, expected a float tensor")
                target.copy_(tensor.to(dtype=target.dtype))
    _freeze(model)


def random_init(model: nn.Module, seed: int = 0) -> None:
    """Fill `model` with plausible random weights (benchmarks and structure tests only).

    RMSNorm weights are ones and RoPE frequencies keep their formula values so the numbers flowing
    through the model have realistic scales.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in expected_tensors(model).items():
            owner = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
            if name.endswith("inv_freq"):
                head_dim = 2 * tensor.shape[0]
                tensor.copy_(1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)))
            elif owner.startswith("norm"):
                tensor.fill_(1.0)
            elif name.endswith(".bias"):
                tensor.zero_()
            else:
                fan_in = tensor.shape[-1]
                tensor.normal_(0.0, fan_in**-0.5, generator=generator)
    _freeze(model)


def build_empty(factory: Callable[[], ModelT], device: str | torch.device = "cpu") -> ModelT:
    """Construct a module without paying for torch's default init (weights are overwritten next)."""
    with torch.device("meta"):
        model = factory()
    return model.to_empty(device=device)


def _freeze(model: nn.Module) -> None:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in model.modules():
        # Rotary tables depend on inv_freq; make sure they are rebuilt.
        if isinstance(module, Rotary):
            module._table = None
        # One GEMM for q|k|v and for w1|w3 (views, no extra memory; see model.FusedLinear).
        fuse = getattr(module, "fuse", None)
        if callable(fuse):
            fuse()
