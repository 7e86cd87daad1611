"""The static KV cache and the forward pass over it (``synth_worker.bark.decode`` has the why):
transformers' eager attention, op for op, writing keys and values in place.

``ScoresBuffer`` keeps the attention scores of a pass over many positions (a prompt pass here, every
fine-stage forward in ``synth_worker.bark.fine``) in one reused buffer: eager attention allocates
the (batch, heads, queries, keys) scores three or four times a layer (``q @ k^T``, the scale, the
causal fill, the mask, the softmax), and glibc serves each block over 32 MB with a fresh ``mmap``
whose pages fault in one by one (at 1024 positions and 12 heads, 50 MB a block). ``attend`` does the
same ops in place on the buffer, so the values are transformers' bit for bit; the scale goes on
``q`` instead of the scores when ``1/sqrt(head_dim)`` is a power of two (then exact either way:
multiplying by a power of two only moves the exponent, so every product and sum rounds the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(slots=True)
class StaticCache:
    """Keys and values of every layer: (layers, batch, heads, max_len, head_dim), preallocated."""

    keys: torch.Tensor
    values: torch.Tensor

    @classmethod
    def allocate(cls, model: Any, batch: int, max_len: int) -> StaticCache:
        import torch

        cfg = model.config
        heads = cfg.num_heads
        shape = (cfg.num_layers, batch, heads, max_len, cfg.hidden_size // heads)
        weight = model.lm_head.weight
        return cls(
            torch.zeros(shape, dtype=weight.dtype, device=weight.device),
            torch.zeros(shape, dtype=weight.dtype, device=weight.device),
        )

    @property
    def batch(self) -> int:
        return int(self.keys.shape[1])

    @property
    def max_len(self) -> int:
        return int(self.keys.shape[3])


class ScoresBuffer:
    """One flat buffer for attention scores, grown to the largest shape asked for and reused."""

    def __init__(self) -> None:
        self._flat: torch.Tensor | None = None

    def view(self, shape: tuple[int, int, int, int], like: torch.Tensor) -> torch.Tensor:
        """A contiguous (batch, heads, queries, keys) view with ``like``'s dtype and device."""
        import torch

        n = math.prod(shape)
        flat = self._flat
        if flat is None or flat.numel() < n or flat.dtype != like.dtype or flat.device != like.device:
            self._flat = flat = None  # free the old buffer before allocating the new one
            self._flat = flat = torch.empty(n, dtype=like.dtype, device=like.device)
        return flat[:n].view(shape)


def attend(
    scores: ScoresBuffer,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """BarkSelfAttention._attn (eval) in place on ``scores``: ``causal``, the layer's ``bias``
    buffer (causal layers), ``mask`` additive."""
    import torch

    head_dim = int(q.shape[-1])
    scale = 1.0 / math.sqrt(head_dim)
    q_len, k_len = int(q.shape[-2]), int(k.shape[-2])
    weights = scores.view((int(q.shape[0]), int(q.shape[1]), q_len, k_len), q)
    if math.frexp(scale)[0] == 0.5:  # a power of two: exact on q
        torch.matmul(q * scale, k.transpose(-1, -2), out=weights)
    else:
        torch.matmul(q, k.transpose(-1, -2), out=weights).mul_(scale)
    if causal is not None:
        weights.masked_fill_(causal[:, :, k_len - q_len : k_len, :k_len] == 0, torch.finfo(weights.dtype).min)
    if mask is not None:
        weights.add_(mask)
    torch.ops.aten._softmax.out(weights, -1, False, out=weights)
    return torch.matmul(weights.to(v.dtype), v)


def _split(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, s, e = t.shape
    return t.view(b, s, heads, e // heads).permute(0, 2, 1, 3)


def _attend(
    attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """BarkSelfAttention._attn, op for op (eager); ``mask`` additive, already causal when given for
    a full-cache step."""
    import torch

    weights = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    q_len, k_len = q.size(-2), k.size(-2)
    if q_len > 1:
        causal = attn.bias[:, :, k_len - q_len : k_len, :k_len]
        weights = weights.masked_fill(causal == 0, torch.finfo(weights.dtype).min)
    if mask is not None:
        weights = weights + mask
    weights = torch.nn.functional.softmax(weights, dim=-1).to(v.dtype)
    return torch.matmul(weights, v)


def forward(
    model: Any,
    embeds: torch.Tensor,
    *,
    positions: torch.Tensor,
    cache: StaticCache,
    start: int,
    mask: torch.Tensor | None,
    scores: ScoresBuffer | None = None,
) -> torch.Tensor:
    """Run ``embeds`` (batch, seq, hidden) at cache positions ``start..start+seq``; returns the
    float32 logits of the last position (batch, vocab). ``mask``: additive, over keys 0..start+seq.
    ``scores``: where a pass over more than one position keeps its attention scores."""
    import torch

    heads = model.config.num_heads
    hidden = embeds + model.position_embeds_layer(positions)
    end = start + embeds.shape[1]
    for i, block in enumerate(model.layers):
        attn = block.attn
        q, k, v = attn.att_proj(block.layernorm_1(hidden)).split(attn.embed_dim, dim=2)
        cache.keys[i, :, :, start:end] = _split(k, heads)
        cache.values[i, :, :, start:end] = _split(v, heads)
        keys, values = cache.keys[i, :, :, :end], cache.values[i, :, :, :end]
        if scores is not None and end - start > 1:
            out = attend(scores, _split(q, heads), keys, values, causal=attn.bias, mask=mask)
        else:
            out = _attend(attn, _split(q, heads), keys, values, mask)
        out = out.transpose(1, 2).contiguous()
        out = attn.out_proj(out.view((*out.size()[:-2], attn.embed_dim)))
        hidden = hidden + out
        hidden = hidden + block.mlp(block.layernorm_2(hidden))
    last = model.layernorm_final(hidden[:, -1:])
    logits: torch.Tensor = model.lm_head(last)[:, -1]
    return logits.to(copy=True, dtype=torch.float32)


class FullStep:
    """One token for every row against the whole static cache, with every input a fixed tensor:
    the shape CUDA graphs and ``torch.compile`` need. ``pos`` (1,) is the cache index being
    written; ``pads`` (batch,) each row's left padding."""

    def __init__(self, model: Any, cache: StaticCache) -> None:
        import torch

        self.model = model
        self.cache = cache
        dev = cache.keys.device
        self.pads = torch.zeros((cache.batch,), dtype=torch.long, device=dev)
        self.ids = torch.zeros((cache.batch, 1), dtype=torch.long, device=dev)
        self.pos = torch.zeros((1,), dtype=torch.long, device=dev)
        self.keys_at = torch.arange(cache.max_len, device=dev)

    def __call__(self) -> torch.Tensor:
        import torch

        model, cache = self.model, self.cache
        heads = model.config.num_heads
        positions = (self.pos - self.pads)[:, None]  # (batch, 1): each row counts from its first token
        visible = (self.keys_at[None] >= self.pads[:, None]) & (self.keys_at[None] <= self.pos)
        minimum = torch.finfo(cache.keys.dtype).min
        mask = torch.where(visible, 0.0, minimum).to(cache.keys.dtype)[:, None, None, :]
        hidden = model.input_embeds_layer(self.ids) + model.position_embeds_layer(positions)
        for i, block in enumerate(model.layers):
            attn = block.attn
            q, k, v = attn.att_proj(block.layernorm_1(hidden)).split(attn.embed_dim, dim=2)
            cache.keys[i].index_copy_(2, self.pos, _split(k, heads))
            cache.values[i].index_copy_(2, self.pos, _split(v, heads))
            out = _attend(attn, _split(q, heads), cache.keys[i], cache.values[i], mask)
            out = out.transpose(1, 2).contiguous()
            out = attn.out_proj(out.view((*out.size()[:-2], attn.embed_dim)))
            hidden = hidden + out
            hidden = hidden + block.mlp(block.layernorm_2(hidden))
        logits: torch.Tensor = model.lm_head(model.layernorm_final(hidden))[:, -1]
        return logits.float()
