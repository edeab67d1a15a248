"""The Kronos tokenizer and predictor as inference-only torch modules.

Module and parameter names mirror the published state dicts exactly (see SPEC.md), so a checkpoint maps
onto `named_parameters()`/`named_buffers()` one to one and `weights.py` can check it strictly.

Two ways to run every transformer stack:
- "full": a causal pass over whole rows (right-padded rows are fine: with causal attention the real
  tokens never see the padding behind them). Used for encoding, prefill, the sliding-window recompute
  and the parity tests.
- "cached": new positions of every sampled path attend their series' cached prefix (stored once per
  series, not per sample) plus their own earlier positions; see `cache.py`.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import CacheLayout, KVCache
from .config import DEP_LAYER_HEADS, PredictorConfig, TokenizerConfig

RMS_EPS = 1e-5


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, in float32 like the reference."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Same formula as the reference (bit-identical results), in fewer dispatched ops.
        return F.rms_norm(x, (x.shape[-1],), self.weight, RMS_EPS)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), no biases. w1 and w3 run as one GEMM once `fuse()` was called."""

    def __init__(self, d_model: int, ff_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, ff_dim, bias=False)
        self.w3 = nn.Linear(d_model, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, d_model, bias=False)
        self._fused = FusedLinear()

    def fuse(self) -> None:
        self._fused.fuse(self.w1, self.w3)

    def forward(self, x: Tensor) -> Tensor:
        fused = self._fused.weights(self.w1, self.w3)
        if fused is None:
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        gate, up = F.linear(x, fused[0]).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class FusedLinear:
    """One GEMM for several same-input linears: their weights are re-pointed to views of one
    concatenated tensor (no extra memory; loading into the views updates it).

    `weights()` returns the concatenated (weight, bias) only while every parameter still is that
    view (moving or replacing parameters silently breaks sharing); otherwise None, and callers use
    the separate linears, which are always correct.
    """

    def __init__(self) -> None:
        self._weight: Tensor | None = None
        self._bias: Tensor | None = None
        self._pointers: tuple[int, ...] = ()

    @staticmethod
    def _current(linears: tuple[nn.Linear, ...]) -> tuple[int, ...]:
        return tuple(t.data_ptr() for lin in linears for t in (lin.weight, lin.bias) if t is not None)

    def fuse(self, *linears: nn.Linear) -> None:
        with torch.no_grad():
            weight = torch.cat([lin.weight.detach() for lin in linears])
            bias = None
            if linears[0].bias is not None:
                bias = torch.cat([lin.bias.detach() for lin in linears])
            start = 0
            for lin in linears:
                rows = lin.weight.shape[0]
                lin.weight.data = weight[start : start + rows]
                if bias is not None:
                    lin.bias.data = bias[start : start + rows]
                start += rows
        self._weight, self._bias = weight, bias
        self._pointers = self._current(linears)

    def weights(self, *linears: nn.Linear) -> tuple[Tensor, Tensor | None] | None:
        if self._weight is None or self._current(linears) != self._pointers:
            return None
        return self._weight, self._bias


class Rotary(nn.Module):
    """Holds the checkpoint's `inv_freq` buffer and serves cos/sin tables for integer positions.

    The table is rebuilt only when a longer one is needed or the buffer changed (loading weights
    bumps the tensor version), so per-step calls are a gather.
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq)
        self._table: tuple[int, int, Tensor, Tensor] | None = None

    def tables(self, length: int) -> tuple[Tensor, Tensor]:
        """cos and *signed* sin, each [length, head_dim], for positions 0..length-1.

        The signed sin is [-sin_half, sin_half], so that rotate_half(x) * sin == roll(x) * signed_sin
        exactly (negation is exact), saving the negate + concat of the textbook form.
        """
        inv_freq: Tensor = self.inv_freq  # type: ignore[assignment]
        version = inv_freq._version
        cached = self._table
        if cached is None or cached[0] < length or cached[1] != version or cached[2].device != inv_freq.device:
            n = max(length, 64)
            t = torch.arange(n, device=inv_freq.device, dtype=inv_freq.dtype)
            freqs = t[:, None] * inv_freq[None, :]
            sin = freqs.sin()
            cached = (n, version, torch.cat((freqs, freqs), dim=-1).cos(), torch.cat((-sin, sin), dim=-1))
            self._table = cached
        return cached[2][:length], cached[3][:length]

    def for_positions(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Tables for a [rows, P] position matrix, shaped [rows, P, 1, head_dim] (broadcast on heads)."""
        cos, sin = self.tables(int(positions.max().item()) + 1)
        return cos[positions].unsqueeze(2), sin[positions].unsqueeze(2)

    def for_range(self, length: int) -> tuple[Tensor, Tensor]:
        """Tables for positions 0..length-1 shared by all rows: [1, length, 1, head_dim]."""
        cos, sin = self.tables(length)
        return cos[None, :, None], sin[None, :, None]


def apply_rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """x*cos + rotate_half(x)*sin, rotate_half(x) = concat(-x2, x1) over the head dim's halves."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class AttentionWeights(nn.Module):
    """The parameters every Kronos attention has (biased q, k, v, out projections and a rotary
    buffer, named as in the checkpoints) and the head merge + output projection."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = Rotary(self.head_dim)

    def merge(self, x: Tensor) -> Tensor:
        """[R, H, L, hd] attention output -> out_proj over the merged heads, [R, L, d]."""
        rows, _, length, _ = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(rows, length, self.n_heads * self.head_dim))


class SelfAttention(AttentionWeights):
    """Multi-head self-attention with biased projections and RoPE on q and k.

    q, k, v come from one GEMM once `fuse()` was called, and RoPE rotates q and k together.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__(d_model, n_heads)
        self._fused = FusedLinear()

    def fuse(self) -> None:
        self._fused.fuse(self.q_proj, self.k_proj, self.v_proj)

    def project(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[R, L, d] -> q, k, v as [R, H, L, hd], q and k rotated; cos/sin are [*, L, 1, hd]."""
        rows, length, _ = x.shape
        h, hd = self.n_heads, self.head_dim
        fused = self._fused.weights(self.q_proj, self.k_proj, self.v_proj)
        if fused is not None:
            qkv = F.linear(x, fused[0], fused[1]).view(rows, length, 3 * h, hd)
            qk, v = qkv[:, :, : 2 * h], qkv[:, :, 2 * h :]
        else:
            qk = torch.cat((self.q_proj(x), self.k_proj(x)), dim=-1).view(rows, length, 2 * h, hd)
            v = self.v_proj(x).view(rows, length, h, hd)
        qk = apply_rope(qk, cos, sin).transpose(1, 2)  # [R, 2H, L, hd]
        return qk[:, :h], qk[:, h:], v.transpose(1, 2)

    def forward_full(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Causal attention over whole rows (positions 0..L-1); also returns k, v for caching."""
        cos, sin = self.rotary.for_range(x.shape[1])
        q, k, v = self.project(x, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.merge(out), k, v

    def forward_cached(self, x: Tensor, cache: KVCache, step: CacheStep) -> Tensor:
        """New positions [N, P, d] of each path, attending the series' prefix and their own cached keys."""
        cos, sin = step.rope(self.rotary)
        q, k, v = self.project(x, cos, sin)
        return self.out_proj(cache.attend(q, k, v, step.slots, step.mask, step.samples))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm1 x), then x + ffn(norm2 x)."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads)
        self.norm2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, ff_dim)

    def forward_full(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        attn, k, v = self.self_attn.forward_full(self.norm1(x))
        x = x + attn
        return x + self.ffn(self.norm2(x)), k, v

    def forward_cached(self, x: Tensor, cache: KVCache, step: CacheStep) -> Tensor:
        x = x + self.self_attn.forward_cached(self.norm1(x), cache, step)
        return x + self.ffn(self.norm2(x))


def run_full(blocks: nn.ModuleList, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Run blocks causally over whole rows, collecting each layer's (k, v)."""
    kvs: list[tuple[Tensor, Tensor]] = []
    for block in _blocks(blocks):
        x, k, v = block.forward_full(x)
        kvs.append((k, v))
    return x, kvs


class CacheStep:
    """One cached pass: the new positions' RoPE positions [N, P], their key slots and attention mask.

    Shared by all layers of a stack; RoPE tables are gathered once per distinct `inv_freq` (every
    layer of a published checkpoint has the same one) instead of once per layer.
    """

    def __init__(self, layout: CacheLayout, positions: Tensor) -> None:
        self.samples = layout.samples
        self.positions = positions
        self.slots = layout.append(positions.shape[1])
        self.mask = layout.mask(positions.shape[1])
        self._rope: list[tuple[Tensor, tuple[Tensor, Tensor]]] = []

    def rope(self, rotary: Rotary) -> tuple[Tensor, Tensor]:
        inv_freq: Tensor = rotary.inv_freq  # type: ignore[assignment]
        for known, tables in self._rope:
            if known is inv_freq or torch.equal(known, inv_freq):
                return tables
        tables = rotary.for_positions(self.positions)
        self._rope.append((inv_freq, tables))
        return tables


def run_cached(blocks: nn.ModuleList, x: Tensor, caches: list[KVCache], step: CacheStep) -> Tensor:
    for block, cache in zip(_blocks(blocks), caches, strict=True):
        x = block.forward_cached(x, cache, step)
    return x


def _blocks(blocks: nn.ModuleList) -> list[TransformerBlock]:
    """The ModuleList's blocks with their type (ModuleList items are typed as plain Modules)."""
    return [cast(TransformerBlock, block) for block in blocks]


# --------------------------------------------------------------------------------------------------
# Tokenizer


class KronosTokenizer(nn.Module):
    """Encoder -> binary spherical quantization -> (s1, s2) ids; ids -> bits -> causal decoder."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed = nn.Linear(config.d_in, d)
        self.encoder = nn.ModuleList(
            TransformerBlock(d, config.n_heads, config.ff_dim) for _ in range(config.n_encoder_blocks)
        )
        self.decoder = nn.ModuleList(
            TransformerBlock(d, config.n_heads, config.ff_dim) for _ in range(config.n_decoder_blocks)
        )
        self.quant_embed = nn.Linear(d, config.codebook_dim)
        self.post_quant_embed = nn.Linear(config.codebook_dim, d)
        self.head = nn.Linear(d, config.d_in)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[R, L, d_in] normalized bars -> (s1 ids, s2 ids), each [R, L] int64, LSB = first dim."""
        z = self.embed(x)
        for block in _blocks(self.encoder):
            z, _, _ = block.forward_full(z)
        z = F.normalize(self.quant_embed(z), dim=-1)
        bits = (z > 0).to(torch.long)
        s1_bits = self.config.s1_bits
        return _bits_to_ids(bits[..., :s1_bits]), _bits_to_ids(bits[..., s1_bits:])

    def quantized(self, s1: Tensor, s2: Tensor) -> Tensor:
        """Ids -> the ±1/sqrt(s1+s2) code vectors the decoder reads: [..., s1_bits + s2_bits]."""
        cfg = self.config
        bits = torch.cat((_ids_to_bits(s1, cfg.s1_bits), _ids_to_bits(s2, cfg.s2_bits)), dim=-1)
        return (bits.to(torch.float32) * 2 - 1) * (1.0 / (cfg.codebook_dim**0.5))

    def decode_full(self, s1: Tensor, s2: Tensor) -> Tensor:
        """[R, L] ids -> [R, L, d_in] normalized bars, causal from position 0 of each row."""
        z = self.post_quant_embed(self.quantized(s1, s2))
        z, _ = run_full(self.decoder, z)
        return self.head(z)

    def decode_with_prefix(
        self,
        prefix_s1: Tensor,
        prefix_s2: Tensor,
        prefix_lengths: Tensor,
        path_s1: Tensor,
        path_s2: Tensor,
        samples: int,
    ) -> Tensor:
        """Decode each path's new ids [N, P] after its series' shared prefix [B, Lp] (right-padded).

        The prefix runs once per series; each path only pays for its P positions, which sit at
        positions prefix_length + j.
        """
        p = path_s1.shape[1]
        b, lp = prefix_s1.shape
        cfg = self.config
        layout = CacheLayout(prefix_lengths, lp, samples, p)
        if lp > 0:
            _, kvs = run_full(self.decoder, self.post_quant_embed(self.quantized(prefix_s1, prefix_s2)))
        else:
            empty = torch.zeros(b, cfg.n_heads, 0, cfg.d_model // cfg.n_heads, device=path_s1.device)
            kvs = [(empty, empty)] * len(self.decoder)
        caches = [KVCache(k, v, layout) for k, v in kvs]
        positions = prefix_lengths.repeat_interleave(samples)[:, None] + torch.arange(p, device=path_s1.device)
        z = self.post_quant_embed(self.quantized(path_s1, path_s2))
        z = run_cached(self.decoder, z, caches, CacheStep(layout, positions))
        return self.head(z)


def _bits_to_ids(bits: Tensor) -> Tensor:
    weights = 2 ** torch.arange(bits.shape[-1], device=bits.device, dtype=torch.long)
    return (bits * weights).sum(-1)


def _ids_to_bits(ids: Tensor, n_bits: int) -> Tensor:
    mask = 2 ** torch.arange(n_bits, device=ids.device, dtype=torch.long)
    return (ids.unsqueeze(-1) & mask) != 0


# --------------------------------------------------------------------------------------------------
# Predictor


class HierarchicalEmbedding(nn.Module):
    """fusion_proj(concat(emb_s1[s1] * sqrt(d), emb_s2[s2] * sqrt(d)))."""

    def __init__(self, s1_bits: int, s2_bits: int, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.emb_s1 = nn.Embedding(2**s1_bits, d_model)
        self.emb_s2 = nn.Embedding(2**s2_bits, d_model)
        self.fusion_proj = nn.Linear(2 * d_model, d_model)

    def forward(self, s1: Tensor, s2: Tensor) -> Tensor:
        scale = math.sqrt(self.d_model)
        return self.fusion_proj(torch.cat((self.emb_s1(s1) * scale, self.emb_s2(s2) * scale), dim=-1))


class TemporalEmbedding(nn.Module):
    """Sum of learned minute/hour/weekday/day/month lookups; stamps are [..., 5] in that column order."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.minute_embed = nn.Embedding(60, d_model)
        self.hour_embed = nn.Embedding(24, d_model)
        self.weekday_embed = nn.Embedding(7, d_model)
        self.day_embed = nn.Embedding(32, d_model)
        self.month_embed = nn.Embedding(13, d_model)

    def forward(self, stamps: Tensor) -> Tensor:
        # Same summation order as the reference (float addition is not associative).
        return (
            self.hour_embed(stamps[..., 1])
            + self.weekday_embed(stamps[..., 2])
            + self.day_embed(stamps[..., 3])
            + self.month_embed(stamps[..., 4])
            + self.minute_embed(stamps[..., 0])
        )


class CrossAttention(AttentionWeights):
    """The dependency-aware layer's attention. At inference its rotary is the identity (the table is
    built for the query length 1, i.e. position 0, for query and keys alike) and it is not causal,
    so `rotary.inv_freq` is loaded but never used."""

    def heads(self, x: Tensor) -> Tensor:
        rows, length, _ = x.shape
        return x.view(rows, length, self.n_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.k_proj(hidden)), self.heads(self.v_proj(hidden))


class DependencyAwareLayer(nn.Module):
    """Conditions s2 on the sampled s1: RMSNorm(hidden + cross_attn(q = emb_s1[s1], k = v = hidden))."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.cross_attn = CrossAttention(d_model, DEP_LAYER_HEADS)
        self.norm = RMSNorm(d_model)


class DualHead(nn.Module):
    """proj_s1 reads the normalized hidden state, proj_s2 the dependency layer's output."""

    def __init__(self, s1_bits: int, s2_bits: int, d_model: int) -> None:
        super().__init__()
        self.proj_s1 = nn.Linear(d_model, 2**s1_bits)
        self.proj_s2 = nn.Linear(d_model, 2**s2_bits)


class KronosPredictorModel(nn.Module):
    """The decoder-only Kronos predictor (the reference's `Kronos` module)."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embedding = HierarchicalEmbedding(config.s1_bits, config.s2_bits, d)
        self.time_emb = TemporalEmbedding(d)
        self.transformer = nn.ModuleList(
            TransformerBlock(d, config.n_heads, config.ff_dim) for _ in range(config.n_layers)
        )
        self.norm = RMSNorm(d)
        self.dep_layer = DependencyAwareLayer(d)
        self.head = DualHead(config.s1_bits, config.s2_bits, d)

    def embed(self, s1: Tensor, s2: Tensor, stamps: Tensor) -> Tensor:
        return self.embedding(s1, s2) + self.time_emb(stamps)

    def forward_full(self, s1: Tensor, s2: Tensor, stamps: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """[R, L] ids + [R, L, 5] stamps -> final normalized hidden states [R, L, d] and per-layer (k, v)."""
        x, kvs = run_full(self.transformer, self.embed(s1, s2, stamps))
        return self.norm(x), kvs

    def forward_cached(self, s1: Tensor, s2: Tensor, stamps: Tensor, caches: list[KVCache], step: CacheStep) -> Tensor:
        """New tokens [N, P] (at `step.positions`) after the cached ones -> normalized hidden [N, P, d]."""
        return self.norm(run_cached(self.transformer, self.embed(s1, s2, stamps), caches, step))

    def dep_cache(self, hidden: Tensor, layout: CacheLayout) -> KVCache:
        """Dependency-layer keys/values over the prefix's final hidden states [B, Lp, d]."""
        k, v = self.dep_layer.cross_attn.keys_values(hidden)
        return KVCache(k, v, layout)

    def s2_logits_cached(self, s1: Tensor, last_hidden: Tensor, cache: KVCache, mask: Tensor, samples: int) -> Tensor:
        """s2 logits [N, V2] for sampled s1 [N]: the query attends everything cached for its path."""
        attn = cache.attend_only(self.dep_query(s1), mask, samples)  # [N, 1, d]
        dep = self.dep_layer
        return self.head.proj_s2(dep.norm(last_hidden + dep.cross_attn.out_proj(attn[:, 0])))

    def s1_logits(self, hidden: Tensor) -> Tensor:
        return self.head.proj_s1(hidden)

    def s2_logits(self, last_hidden: Tensor, attn: Tensor) -> Tensor:
        """proj_s2(norm_dep(h_last + out_proj(attn))); `attn` is [R, 4, 1, hd] from the dep attention."""
        dep = self.dep_layer
        x2 = dep.norm(last_hidden + dep.cross_attn.merge(attn)[:, 0])
        return self.head.proj_s2(x2)

    def dep_query(self, s1: Tensor) -> Tensor:
        """Query heads [R, 4, 1, hd] from the (unscaled) s1 embedding of the sampled token."""
        cross = self.dep_layer.cross_attn
        return cross.heads(cross.q_proj(self.embedding.emb_s1(s1)[:, None, :]))

    def s2_logits_full(self, hidden: Tensor, lengths: Tensor, s1: Tensor) -> Tensor:
        """s2 logits at each row's last real position, attending over its `lengths` real positions."""
        cross = self.dep_layer.cross_attn
        k, v = cross.keys_values(hidden)
        mask = None
        if not bool((lengths == hidden.shape[1]).all()):
            mask = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None])[:, None, None, :]
        attn = F.scaled_dot_product_attention(self.dep_query(s1), k, v, attn_mask=mask)
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
        return self.s2_logits(last, attn)
