"""The Kronos tokenizer and predictor as inference-only torch modules.

Module and parameter names mirror the published state dicts exactly (see SPEC.md), so a checkpoint maps
onto `named_parameters()`/`named_buffers()` one to one and `weights.py` can check it strictly.

Two ways to run every transformer stack:
- "full": a causal pass over whole rows (right-padded rows are fine: with causal attention the real
  tokens never see the padding behind them). Used for encoding, prefill, the sliding-window recompute
  and the parity tests.
- "cached": new positions attend to a *shared prefix* cache (one entry per series, keys/values of its
  context) plus a *path* cache (one entry per sampled path). Samples of one series are consecutive rows,
  so their queries are regrouped against the series' prefix instead of copying the prefix per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DEP_LAYER_HEADS, PredictorConfig, TokenizerConfig

RMS_EPS = 1e-5


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, in float32 like the reference."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # The fused kernel gives bit-identical results to the explicit formula here, in one pass.
        return F.rms_norm(x, (x.shape[-1],), self.weight, RMS_EPS)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), no biases."""

    def __init__(self, d_model: int, ff_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, ff_dim, bias=False)
        self.w3 = nn.Linear(d_model, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


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
        """Tables for a [rows, P] position matrix, shaped [rows, 1, P, head_dim] (broadcast on heads)."""
        cos, sin = self.tables(int(positions.max().item()) + 1)
        return cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)

    def for_range(self, length: int) -> tuple[Tensor, Tensor]:
        """Tables for positions 0..length-1 shared by all rows: [1, 1, length, head_dim]."""
        cos, sin = self.tables(length)
        return cos[None, None], sin[None, None]


def apply_rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """x*cos + rotate_half(x)*sin, rotate_half(x) = concat(-x2, x1) over the head dim's halves."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


@dataclass
class SharedKV:
    """Keys/values of a shared prefix, one row per series: [B, H, L, hd]; `bias` masks padding."""

    k: Tensor
    v: Tensor
    bias: Tensor | None  # [B, 1, 1, L] additive (0 or -inf), None when every prefix has length L


@dataclass
class PathKV:
    """Preallocated per-path keys/values [N, H, capacity, hd]; the first `length` slots are filled."""

    k: Tensor
    v: Tensor
    length: int = 0

    @classmethod
    def empty(cls, rows: int, heads: int, capacity: int, head_dim: int, like: Tensor) -> PathKV:
        shape = (rows, heads, capacity, head_dim)
        return cls(like.new_empty(shape), like.new_empty(shape))

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write P new positions and return the filled views."""
        p = k.shape[2]
        self.k[:, :, self.length:self.length + p] = k
        self.v[:, :, self.length:self.length + p] = v
        self.length += p
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


def padding_bias(lengths: Tensor, width: int) -> Tensor | None:
    """Additive mask [B, 1, 1, width] hiding positions >= length; None if nothing is hidden."""
    if bool((lengths == width).all()):
        return None
    positions = torch.arange(width, device=lengths.device)
    hidden = positions[None, :] >= lengths[:, None]
    bias = torch.zeros(hidden.shape, dtype=torch.float32, device=lengths.device)
    bias.masked_fill_(hidden, float("-inf"))
    return bias[:, None, None, :]


def attend_cached(q: Tensor, prefix: SharedKV | None, k: Tensor, v: Tensor, samples: int) -> Tensor:
    """Attention of new queries [N, H, P, hd] over a series-shared prefix and their own path keys.

    Rows are series-major (row = series * samples + sample). The path keys `k, v` [N, H, G, hd] end
    with the P query positions themselves; query j sees path keys up to G - P + j (causal chunk).
    """
    n, h, p, hd = q.shape
    g = k.shape[2]
    q = q * (1.0 / math.sqrt(hd))
    scores_path = torch.matmul(q, k.transpose(-1, -2))  # [N, H, P, G]
    if p > 1:
        allowed = torch.ones(p, g, dtype=torch.bool, device=q.device).tril(diagonal=g - p)
        scores_path = scores_path.masked_fill(~allowed, float("-inf"))
    if prefix is None:
        return torch.matmul(torch.softmax(scores_path, dim=-1), v)
    b = n // samples
    lp = prefix.k.shape[2]
    # Regroup the samples of a series as extra queries against its single prefix copy.
    qg = q.view(b, samples, h, p, hd).transpose(1, 2).reshape(b, h, samples * p, hd)
    scores_prefix = torch.matmul(qg, prefix.k.transpose(-1, -2))  # [B, H, S*P, Lp]
    if prefix.bias is not None:
        scores_prefix = scores_prefix + prefix.bias
    scores_prefix = scores_prefix.view(b, h, samples, p, lp).transpose(1, 2).reshape(n, h, p, lp)
    probs = torch.softmax(torch.cat((scores_prefix, scores_path), dim=-1), dim=-1)
    out = torch.matmul(probs[..., lp:], v)
    probs_prefix = probs[..., :lp].reshape(b, samples, h, p, lp).transpose(1, 2).reshape(b, h, samples * p, lp)
    out_prefix = torch.matmul(probs_prefix, prefix.v)  # [B, H, S*P, hd]
    out_prefix = out_prefix.view(b, h, samples, p, hd).transpose(1, 2).reshape(n, h, p, hd)
    return out + out_prefix


class SelfAttention(nn.Module):
    """Multi-head self-attention with biased projections and RoPE on q and k."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = Rotary(self.head_dim)

    def _heads(self, x: Tensor) -> Tensor:
        rows, length, _ = x.shape
        return x.view(rows, length, self.n_heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:
        rows, _, length, _ = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(rows, length, self.n_heads * self.head_dim))

    def project(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q = apply_rope(self._heads(self.q_proj(x)), cos, sin)
        k = apply_rope(self._heads(self.k_proj(x)), cos, sin)
        return q, k, self._heads(self.v_proj(x))

    def forward_full(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Causal attention over whole rows (positions 0..L-1); also returns k, v for caching."""
        cos, sin = self.rotary.for_range(x.shape[1])
        q, k, v = self.project(x, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self._merge(out), k, v

    def forward_cached(
        self, x: Tensor, positions: Tensor, prefix: SharedKV | None, path: PathKV, samples: int
    ) -> Tensor:
        cos, sin = self.rotary.for_positions(positions)
        q, k, v = self.project(x, cos, sin)
        keys, values = path.append(k, v)
        return self._merge(attend_cached(q, prefix, keys, values, samples))


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

    def forward_cached(
        self, x: Tensor, positions: Tensor, prefix: SharedKV | None, path: PathKV, samples: int
    ) -> Tensor:
        x = x + self.self_attn.forward_cached(self.norm1(x), positions, prefix, path, samples)
        return x + self.ffn(self.norm2(x))


def run_full(blocks: nn.ModuleList, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Run blocks causally over whole rows, collecting each layer's (k, v)."""
    kvs: list[tuple[Tensor, Tensor]] = []
    for block in blocks:
        x, k, v = block.forward_full(x)
        kvs.append((k, v))
    return x, kvs


def run_cached(
    blocks: nn.ModuleList,
    x: Tensor,
    positions: Tensor,
    prefixes: list[SharedKV] | None,
    paths: list[PathKV],
    samples: int,
) -> Tensor:
    for i, block in enumerate(blocks):
        x = block.forward_cached(x, positions, None if prefixes is None else prefixes[i], paths[i], samples)
    return x


def shared_prefixes(kvs: list[tuple[Tensor, Tensor]], bias: Tensor | None) -> list[SharedKV]:
    return [SharedKV(k, v, bias) for k, v in kvs]


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
        for block in self.encoder:
            z, _, _ = block.forward_full(z)
        z = F.normalize(self.quant_embed(z), dim=-1)
        bits = (z > 0).to(torch.long)
        s1_bits = self.config.s1_bits
        return _bits_to_ids(bits[..., :s1_bits]), _bits_to_ids(bits[..., s1_bits:])

    def quantized(self, s1: Tensor, s2: Tensor) -> Tensor:
        """Ids -> the ±1/sqrt(s1+s2) code vectors the decoder reads: [..., s1_bits + s2_bits]."""
        cfg = self.config
        bits = torch.cat((_ids_to_bits(s1, cfg.s1_bits), _ids_to_bits(s2, cfg.s2_bits)), dim=-1)
        return (bits.to(torch.float32) * 2 - 1) * (1.0 / (cfg.codebook_dim ** 0.5))

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
        n, p = path_s1.shape
        prefixes: list[SharedKV] | None = None
        if prefix_s1.shape[1] > 0:
            zp = self.post_quant_embed(self.quantized(prefix_s1, prefix_s2))
            _, kvs = run_full(self.decoder, zp)
            prefixes = shared_prefixes(kvs, padding_bias(prefix_lengths, prefix_s1.shape[1]))
        positions = prefix_lengths.repeat_interleave(samples)[:, None] + torch.arange(p, device=path_s1.device)
        z = self.post_quant_embed(self.quantized(path_s1, path_s2))
        cfg = self.config
        head_dim = cfg.d_model // cfg.n_heads
        paths = [PathKV.empty(n, cfg.n_heads, p, head_dim, z) for _ in self.decoder]
        z = run_cached(self.decoder, z, positions, prefixes, paths, samples)
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


class CrossAttention(nn.Module):
    """The dependency-aware layer's attention. At inference its rotary is the identity (the table is
    built for the query length 1, i.e. position 0, for query and keys alike) and it is not causal,
    so `rotary.inv_freq` is loaded but never used."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = Rotary(self.head_dim)

    def heads(self, x: Tensor) -> Tensor:
        rows, length, _ = x.shape
        return x.view(rows, length, self.n_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.k_proj(hidden)), self.heads(self.v_proj(hidden))

    def merge(self, x: Tensor) -> Tensor:
        rows, _, length, _ = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(rows, length, self.n_heads * self.head_dim))


class DependencyAwareLayer(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.cross_attn = CrossAttention(d_model, DEP_LAYER_HEADS)
        self.norm = RMSNorm(d_model)


class DualHead(nn.Module):
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

    def forward_cached(
        self,
        s1: Tensor,
        s2: Tensor,
        stamps: Tensor,
        positions: Tensor,
        prefixes: list[SharedKV],
        paths: list[PathKV],
        samples: int,
    ) -> Tensor:
        """New tokens [N, P] at `positions` after the series' cached prefixes -> normalized hidden [N, P, d]."""
        x = run_cached(self.transformer, self.embed(s1, s2, stamps), positions, prefixes, paths, samples)
        return self.norm(x)

    def s1_logits(self, hidden: Tensor) -> Tensor:
        return self.head.proj_s1(hidden)

    def s2_logits(self, s1: Tensor, last_hidden: Tensor, attn: Tensor) -> Tensor:
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
        return self.s2_logits(s1, last, attn)
