"""KV caches shared by the samples of a series: one attention call per layer per step.

Every sampled path of a series starts from the same context, so its keys/values are stored once per
series, followed by each sample's own slots:

    keys of series b:  [ prefix (Lp, right-padded) | sample 0: cap slots | sample 1: cap slots | ... ]

The S samples' new queries of a series are grouped as S*P query rows against that single key list,
and a boolean mask lets each query see the series' real prefix keys plus its own sample's filled
slots (causally within a chunk). So one fused `scaled_dot_product_attention` serves all samples with
no per-sample copy of the prefix; the masked cells (other samples' slots) cost S*cap extra dot products,
negligible next to the projections.

Rows outside this module are series-major paths (row = series * S + sample), each with P positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class CacheLayout:
    """Slot bookkeeping shared by every layer of a stack (and the dependency layer of the predictor)."""

    def __init__(self, prefix_lengths: Tensor, prefix_width: int, samples: int, capacity: int) -> None:
        self.prefix_width = prefix_width
        self.samples = samples
        self.capacity = capacity
        self.width = prefix_width + samples * capacity
        self.filled = 0  # positions written per sample
        device = prefix_lengths.device
        slot = torch.arange(self.width, device=device)
        self._prefix_ok = slot[None, :] < prefix_lengths[:, None]  # [B, width]; False past each prefix
        own = slot - prefix_width
        per = max(capacity, 1)
        self._slot_sample = torch.where(own >= 0, own // per, -1)  # -1: prefix slot
        self._slot_step = torch.where(own >= 0, own % per, 0)

    def append(self, positions: int) -> Tensor:
        """Reserve the next `positions` slots of every sample: key-slot indices in query order (s, j)."""
        if self.filled + positions > self.capacity:
            raise ValueError(f"cache capacity {self.capacity} exceeded")
        device = self._prefix_ok.device
        sample = torch.arange(self.samples, device=device)[:, None]
        step = torch.arange(positions, device=device)[None, :] + self.filled
        self.filled += positions
        return (self.prefix_width + sample * self.capacity + step).reshape(-1)

    def mask(self, positions: int) -> Tensor:
        """[B, 1, S*P, width] additive float mask (0 visible, -inf hidden) for queries at the last
        `positions` filled steps of each sample. Float, so that no layer converts a bool mask again."""
        device = self._prefix_ok.device
        query_sample = torch.arange(self.samples, device=device).repeat_interleave(positions)
        query_step = torch.arange(positions, device=device).repeat(self.samples) + (self.filled - positions)
        own = (self._slot_sample[None, :] == query_sample[:, None]) & (self._slot_step[None, :] <= query_step[:, None])
        visible = (self._prefix_ok[:, None, :] | own[None, :, :])[:, None]
        return torch.zeros(visible.shape, device=device).masked_fill_(~visible, float("-inf"))


class KVCache:
    """One layer's keys and values, [B, H, width, hd], laid out as `CacheLayout` says."""

    def __init__(self, prefix_k: Tensor, prefix_v: Tensor, layout: CacheLayout) -> None:
        b, h, lp, hd = prefix_k.shape
        self.k = prefix_k.new_empty(b, h, layout.width, hd)
        self.v = prefix_v.new_empty(b, h, layout.width, hd)
        self.k[:, :, :lp] = prefix_k
        self.v[:, :, :lp] = prefix_v
        # Unwritten slots are masked but still enter the dot products: they must hold finite numbers.
        self.k[:, :, lp:] = 0.0
        self.v[:, :, lp:] = 0.0

    def attend(self, q: Tensor, k: Tensor, v: Tensor, slots: Tensor, mask: Tensor, samples: int) -> Tensor:
        """Store the new k, v [N, H, P, hd] at `slots` and attend the queries [N, H, P, hd] -> [N, P, H*hd]."""
        self.k[:, :, slots] = group(k, samples)
        self.v[:, :, slots] = group(v, samples)
        out = F.scaled_dot_product_attention(group(q, samples), self.k, self.v, attn_mask=mask)
        return ungroup(out, samples, q.shape[2])

    def attend_only(self, q: Tensor, mask: Tensor, samples: int) -> Tensor:
        """Attend queries [N, H, P, hd] without writing anything -> [N, P, H*hd]."""
        out = F.scaled_dot_product_attention(group(q, samples), self.k, self.v, attn_mask=mask)
        return ungroup(out, samples, q.shape[2])

    def write(self, k: Tensor, v: Tensor, slots: Tensor, samples: int) -> None:
        self.k[:, :, slots] = group(k, samples)
        self.v[:, :, slots] = group(v, samples)


def group(x: Tensor, samples: int) -> Tensor:
    """[N, H, P, hd] path rows -> [B, H, S*P, hd] per series, query order (sample, position)."""
    n, h, p, hd = x.shape
    return x.reshape(n // samples, samples, h, p, hd).transpose(1, 2).reshape(n // samples, h, samples * p, hd)


def ungroup(x: Tensor, samples: int, positions: int) -> Tensor:
    """[B, H, S*P, hd] -> [N, P, H*hd] (heads merged, ready for the output projection)."""
    b, h, _, hd = x.shape
    return x.view(b, h, samples, positions, hd).permute(0, 2, 3, 1, 4).reshape(b * samples, positions, h * hd)
