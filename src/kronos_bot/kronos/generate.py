"""Batched autoregressive generation: all series x all samples in one pass per step.

Layout: B series, S samples each, N = B*S paths, rows series-major (path = series*S + sample).
Series may have different context lengths; they are right-padded, which causal attention makes free:
real tokens never look at the padding behind them, and positions count from 0 at each row's first
token. Padding is only ever visible to *new* positions (cached steps, the dependency layer), where an
additive mask hides it.

Cached path (while every window still starts at token 0, i.e. context + step <= max_context):
- the context is encoded and prefilled once per series; the per-layer keys/values of that prefill are
  stored once per series and shared by its samples (`cache.py`), never copied per sample;
- each step feeds only the N newly sampled tokens, each attending its series' prefix + its own past;
- the dependency-aware layer's keys/values over the window are cached the same way.
Once any window would slide, positions restart at the window start and cached keys no longer apply:
from that step on every step recomputes the full windows (the reference semantics, exactly).

The tokenizer's causal decoder also needs each series' context part only once (`decode_with_prefix`).
`use_cache=False` recomputes everything at every step; it is the baseline and the cache's oracle.

Randomness: one stream per series (`RowStreams`), from which that series' S paths draw their uniforms at
every sampling step, so a series' paths depend on its own stream only -- never on which other series
share the batch or where it sits in it (a backtest batches 16 series, the live cycle 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .cache import CacheLayout, KVCache
from .model import CacheStep, KronosPredictorModel, KronosTokenizer


@dataclass(frozen=True)
class SamplingSpec:
    """Reference sampling: logits / T, then top-k (if > 0) else top-p (if < 1), then one draw."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.9

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class RowStreams:
    """One random stream per series of a batch; the rows of a series (its samples) draw from its stream.

    Every sampling call of a generation draws from every stream the same number of uniforms (one per
    sample), in the same order, so each series sees exactly the sequence it would see alone.
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        if not generators:
            raise ValueError("RowStreams needs at least one generator")
        self.generators = list(generators)

    def uniform(self, rows: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """[rows, 1] uniforms: rows / B from each series' stream, series-major like the rows."""
        per, rest = divmod(rows, len(self.generators))
        if rest:
            raise ValueError(f"{rows} rows do not split over {len(self.generators)} series")
        return torch.cat([torch.rand(per, 1, generator=g, device=device, dtype=dtype) for g in self.generators], dim=0)


def sample_from_logits(logits: Tensor, spec: SamplingSpec, generator: torch.Generator | RowStreams) -> Tensor:
    """[R, V] logits -> [R] token ids: one draw per row (inverse CDF on one uniform) from `generator`, or
    from each series' own stream (`RowStreams`).

    Same distribution as the reference (logits / T; top-k, else top-p; softmax; one multinomial
    draw), computed with a threshold instead of a scatter: the kept tokens are those whose
    probability is >= the smallest kept one. With exact ties at that boundary all tied tokens are
    kept (the reference keeps an arbitrary sort-order subset of them).
    """
    cdf = torch.cumsum(filtered_probs(logits, spec), dim=-1)
    total = cdf[:, -1:]
    if isinstance(generator, RowStreams):
        u = generator.uniform(cdf.shape[0], dtype=cdf.dtype, device=cdf.device) * total
    else:
        u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * total
    index = torch.searchsorted(cdf, u, right=True)
    # Rounding can push u onto the total; never step past the last token with probability > 0.
    last_kept = (cdf < total).sum(dim=-1, keepdim=True)
    return torch.minimum(index, last_kept)[:, 0]


def filtered_probs(logits: Tensor, spec: SamplingSpec) -> Tensor:
    """softmax(logits / T) with the tokens top-k / top-p would drop set to 0 (rows not renormalized)."""
    logits = logits / spec.temperature
    probs = torch.softmax(logits, dim=-1)
    if spec.top_k > 0:
        k = min(spec.top_k, logits.shape[-1])
        # Thresholding logits (not probs) keeps the reference's tie rule: drop only logits < k-th.
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]
        probs = probs.masked_fill(logits < kth, 0.0)
    elif spec.top_p < 1.0:
        probs = probs.masked_fill(probs < _nucleus_threshold(probs, spec.top_p), 0.0)
    return probs


def _nucleus_threshold(probs: Tensor, top_p: float) -> Tensor:
    """[R, 1] smallest kept probability: sorted descending, a token is dropped once the tokens
    before it already sum to more than top_p (the crossing token and the most likely are kept)."""
    if probs.device.type == "cpu":
        # numpy's SIMD sort of values is ~25x faster than torch.sort, and indices are not needed.
        ordered = torch.from_numpy(np.ascontiguousarray(np.sort(probs.numpy(), axis=-1)[:, ::-1]))
    else:
        ordered = torch.sort(probs, dim=-1, descending=True).values
    cumulative = torch.cumsum(ordered, dim=-1)
    kept = 1 + (cumulative[:, :-1] <= top_p).sum(dim=-1, keepdim=True)
    return ordered.gather(1, kept - 1)


@dataclass
class GenerationInput:
    """Normalized, clipped contexts of B series, right-padded.

    x: [B, Lmax, d_in] float32. lengths: [B] int64 context lengths (each <= max_context).
    stamps: [B, Lmax + pred_len, 5] int64; row b holds its context stamps at [0, len_b) and its
    future stamps at [len_b, len_b + pred_len).
    """

    x: Tensor
    lengths: Tensor
    stamps: Tensor


def generate(
    tokenizer: KronosTokenizer,
    model: KronosPredictorModel,
    batch: GenerationInput,
    *,
    pred_len: int,
    samples: int,
    spec: SamplingSpec,
    max_context: int,
    generator: torch.Generator | RowStreams,
    use_cache: bool = True,
) -> Tensor:
    """Sample `samples` paths per series; returns normalized predictions [B, S, pred_len, d_in].

    `generator`: one RowStreams stream per series (what the predictor passes), or one torch.Generator
    shared by all rows (then a series' paths depend on the batch)."""
    if pred_len < 1 or pred_len > max_context:
        raise ValueError(f"pred_len must be in [1, max_context={max_context}], got {pred_len}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    lengths = batch.lengths
    if int(lengths.min()) < 1 or int(lengths.max()) > max_context:
        raise ValueError(f"context lengths must be in [1, max_context={max_context}]")
    with torch.inference_mode():
        s1_ctx, s2_ctx = tokenizer.encode(batch.x)
        gen = _Generator(model, batch, s1_ctx, s2_ctx, pred_len, samples, spec, max_context, generator)
        if use_cache:
            gen.run_cached()
        gen.run_recompute()
        out = _decode(tokenizer, gen, use_cache)
    b = batch.x.shape[0]
    return out.view(b, samples, pred_len, out.shape[-1])


class _Generator:
    """State of one generation: the per-path token buffer and sampling bookkeeping."""

    def __init__(
        self,
        model: KronosPredictorModel,
        batch: GenerationInput,
        s1_ctx: Tensor,
        s2_ctx: Tensor,
        pred_len: int,
        samples: int,
        spec: SamplingSpec,
        max_context: int,
        generator: torch.Generator | RowStreams,
    ) -> None:
        self.model = model
        self.batch = batch
        self.s1_ctx, self.s2_ctx = s1_ctx, s2_ctx
        self.pred_len, self.samples, self.spec = pred_len, samples, spec
        self.max_context, self.generator = max_context, generator
        b, lmax = s1_ctx.shape
        self.row_lengths = batch.lengths.repeat_interleave(samples)  # [N]
        n = b * samples
        # Full sequences per path: context at [0, len), generated tokens at [len, len + pred_len).
        width = lmax + pred_len
        self.seq_s1 = s1_ctx.new_zeros(n, width)
        self.seq_s2 = s2_ctx.new_zeros(n, width)
        self.seq_s1[:, :lmax] = s1_ctx.repeat_interleave(samples, 0)
        self.seq_s2[:, :lmax] = s2_ctx.repeat_interleave(samples, 0)
        self.step = 0  # number of tokens generated so far

    def _sample(self, s1_logits: Tensor) -> Tensor:
        return sample_from_logits(s1_logits, self.spec, self.generator)

    def _store(self, s1: Tensor, s2: Tensor) -> None:
        where = (self.row_lengths + self.step)[:, None]
        self.seq_s1.scatter_(1, where, s1[:, None])
        self.seq_s2.scatter_(1, where, s2[:, None])
        self.step += 1

    def _fits(self, step: int) -> bool:
        """Whether the window for generating token `step` still starts at token 0 for every series."""
        return int(self.batch.lengths.max()) + step <= self.max_context

    def run_cached(self) -> None:
        """Generate while all windows start at 0, reusing keys/values (exact in that regime)."""
        model, batch, s = self.model, self.batch, self.samples
        lengths = batch.lengths
        b, lmax = self.s1_ctx.shape
        hidden, kvs = model.forward_full(self.s1_ctx, self.s2_ctx, batch.stamps[:, :lmax])
        # Each path feeds back at most pred_len - 1 tokens (the last one generated is never fed).
        layout = CacheLayout(lengths, lmax, s, self.pred_len - 1)
        caches = [KVCache(k, v, layout) for k, v in kvs]
        dep = model.dep_cache(hidden, layout)
        series = torch.arange(b, device=hidden.device)
        last = hidden[series, lengths - 1]  # [B, d]
        # Step 0: the s1 distribution is the same for every sample of a series.
        s1 = self._sample(model.s1_logits(last).repeat_interleave(s, 0))
        last = last.repeat_interleave(s, 0)
        mask = layout.mask(1)
        while True:
            s2 = self._sample(model.s2_logits_cached(s1, last, dep, mask, s))
            self._store(s1, s2)
            if self.step >= self.pred_len or not self._fits(self.step):
                return
            # Feed the token just generated (position len + step - 1) and predict the next one.
            positions = (self.row_lengths + self.step - 1)[:, None]
            stamps = batch.stamps[series, lengths + self.step - 1].repeat_interleave(s, 0)[:, None, :]
            step = CacheStep(layout, positions)
            hidden_new = model.forward_cached(s1[:, None], s2[:, None], stamps, caches, step)
            dep.write(*model.dep_layer.cross_attn.keys_values(hidden_new), step.slots, s)
            mask = step.mask
            last = hidden_new[:, 0]
            s1 = self._sample(model.s1_logits(last))

    def run_recompute(self) -> None:
        """Generate the remaining tokens by full passes over each path's window (sliding if needed)."""
        model, batch = self.model, self.batch
        stamps = batch.stamps.repeat_interleave(self.samples, 0)
        while self.step < self.pred_len:
            total = self.row_lengths + self.step  # tokens available to each path
            width = torch.clamp(total, max=self.max_context)
            start = total - width
            w = int(width.max())
            index = start[:, None] + torch.arange(w, device=start.device)[None, :]
            index = torch.minimum(index, (total - 1)[:, None])  # padding repeats the last token
            s1_win = self.seq_s1.gather(1, index)
            s2_win = self.seq_s2.gather(1, index)
            stamps_win = stamps.gather(1, index[:, :, None].expand(-1, -1, stamps.shape[-1]))
            hidden, _ = model.forward_full(s1_win, s2_win, stamps_win)
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            s1 = self._sample(model.s1_logits(hidden[rows, width - 1]))
            s2 = self._sample(model.s2_logits_full(hidden, width, s1))
            self._store(s1, s2)


def _decode(tokenizer: KronosTokenizer, gen: _Generator, use_cache: bool) -> Tensor:
    """Decode each path's last <= max_context tokens; return its last pred_len positions [N, P, d_in]."""
    p, s = gen.pred_len, gen.samples
    lengths = gen.batch.lengths
    total = lengths + p
    start = torch.clamp(total - gen.max_context, min=0)
    if use_cache and s > 1:
        # The window part before the generated tokens is the same for all samples of a series.
        # (With one sample nothing is shared, and the full pass reproduces the reference's exact
        # rounding: small-row GEMMs round differently from the full-window ones.)
        prefix_len = lengths - start
        lp = int(prefix_len.max())
        index = start[:, None] + torch.arange(lp, device=lengths.device)[None, :]
        index = torch.minimum(index, (lengths - 1)[:, None])
        rows = torch.arange(gen.seq_s1.shape[0], device=lengths.device)
        gen_index = gen.row_lengths[:, None] + torch.arange(p, device=lengths.device)[None, :]
        return tokenizer.decode_with_prefix(
            gen.s1_ctx.gather(1, index),
            gen.s2_ctx.gather(1, index),
            prefix_len,
            gen.seq_s1[rows[:, None], gen_index],
            gen.seq_s2[rows[:, None], gen_index],
            s,
        )
    row_total = total.repeat_interleave(s)
    row_start = start.repeat_interleave(s)
    width = row_total - row_start
    w = int(width.max())
    index = row_start[:, None] + torch.arange(w, device=lengths.device)[None, :]
    index = torch.minimum(index, (row_total - 1)[:, None])
    decoded = tokenizer.decode_full(gen.seq_s1.gather(1, index), gen.seq_s2.gather(1, index))
    keep = (width - p)[:, None] + torch.arange(p, device=lengths.device)[None, :]
    return decoded.gather(1, keep[:, :, None].expand(-1, -1, decoded.shape[-1]))
