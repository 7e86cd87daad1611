"""Bark's fine stage: ``BarkFineModel.generate`` (transformers 5.24), the same tokens, less work.

The fine model is non-causal: one forward over a 1024-frame window per codebook (2..7), each
predicting one codebook at every position from the sum of the codebooks before it, windows
sliding by 512 frames. Nothing is cached between two forwards (every position's input changes);
what ``FineDecoder`` saves is work whose result is thrown away or recomputed, and memory traffic:

- **No fresh 50 MB tensors per layer.** Eager attention allocates the (heads, 1024, 1024) scores
  three times a layer (``q @ k^T``, ``* scale``, softmax); glibc serves blocks that large with a
  fresh ``mmap`` each time, so every layer page-faults 150 MB in (a quarter of a bark-small forward,
  as system time). Here the scores go to one buffer kept by the decoder (sized for the largest
  batch and window seen) and the softmax runs in place on it (``static_cache.attend``).
- **The scale on ``q``, not on the scores**, when ``1/sqrt(head_dim)`` is a power of two (head
  size 64 at every Bark size): exact either way, with 1/16 of the multiplications.
- **Only the codebook embeddings the sum uses** (transformers embeds all eight and drops the rest).
- **The last layer, the final layer norm and the head on the positions whose prediction is used**:
  the keys and values of the last layer still come from every position, but its queries,
  attention rows, MLP and head skip the speaker-history positions (never predicted) and, for the
  last codebook of the last window when decoding greedily, the padding past the longest row.

Every op is transformers' eager op on the same operands, so on the same kernels the tokens are
``generate()``'s bit for bit; the skipped rows rely on a matrix product's row not depending on
which other rows are computed with it (true of MKL for two rows or more on the machines tested;
one row takes a matrix-vector path, so a range is never shorter than ``MIN_ROWS``).
tests/synth_worker/test_bark_fine.py checks both against ``BarkFineModel.generate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synth_worker.bark.static_cache import ScoresBuffer, attend

if TYPE_CHECKING:
    import torch

MIN_ROWS = 16  # a partial row range is widened to at least this many rows (see the module doc)


class FineDecoder:
    """``BarkFineModel``'s forward over a reusable scores buffer. Not thread-safe: the engine's
    inference thread owns it."""

    def __init__(self, model: Any) -> None:
        from transformers.models.bark.modeling_bark import BarkSelfAttention

        self.model = model
        self.heads = int(model.config.num_heads)
        # transformers' eager attention is what this reproduces; another implementation
        # (flash attention on CUDA) runs through the model's own forward
        self.eager = all(type(block.attn) is BarkSelfAttention for block in model.layers)
        self.scores = ScoresBuffer()

    def logits(self, codebook: int, x: torch.Tensor, rows: tuple[int, int]) -> torch.Tensor:
        """``BarkFineModel.forward(codebook, x).logits[:, lo:hi]`` for ``rows`` = (lo, hi)."""
        lo, hi = rows
        if not self.eager or self.model.training:
            full: torch.Tensor = self.model(codebook, x).logits
            return full[:, lo:hi]
        import torch

        model = self.model
        seq = int(x.shape[1])
        trim = hi - lo < seq
        if trim:
            lo = max(0, min(lo, hi - MIN_ROWS))
            hi = max(hi, min(seq, lo + MIN_ROWS))
        embeds = torch.cat(
            [model.input_embeds_layers[i](x[:, :, i]).unsqueeze(-1) for i in range(codebook + 1)], dim=-1
        ).sum(dim=-1)
        weight = model.position_embeds_layer.weight
        positions = torch.arange(0, seq, dtype=torch.long, device=weight.device).unsqueeze(0)
        hidden = embeds.to(weight.device) + model.position_embeds_layer(positions)
        last = len(model.layers) - 1
        for i, block in enumerate(model.layers):
            attn = block.attn
            q, k, v = attn.att_proj(block.layernorm_1(hidden)).split(attn.embed_dim, dim=2)
            if i == last and trim:
                q, hidden = q[:, lo:hi], hidden[:, lo:hi]
            out = attend(self.scores, self._split(q), self._split(k), self._split(v))
            out = out.transpose(1, 2).contiguous()
            out = attn.out_proj(out.view((*out.size()[:-2], attn.embed_dim)))
            hidden = hidden + out
            hidden = hidden + block.mlp(block.layernorm_2(hidden))
        logits: torch.Tensor = model.lm_heads[codebook - model.config.n_codes_given](
            model.layernorm_final(hidden)
        )
        return logits[:, rows[0] - lo : rows[1] - lo]

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, s, e = t.shape
        return t.view(b, s, self.heads, e // self.heads).permute(0, 2, 1, 3)


def fill_windows(
    decoder: FineDecoder,
    x: torch.Tensor,
    *,
    n_history: int,
    real_end: int,
    codebooks: tuple[int, int],
    window: int,
    max_history: int,
    codebook_size: int,
    temperature: float | None,
) -> None:
    """``BarkFineModel.generate``'s window loop, in place on ``x`` (batch, positions, 8 codebooks;
    history first, padded to at least ``window``): codebooks ``codebooks[0]..codebooks[1]-1`` at
    every position from ``n_history`` on. ``real_end``: positions past it are padding in every row,
    whose last-codebook tokens nobody reads."""
    import torch
    import torch.nn.functional as F

    length = int(x.shape[1])
    n_loops = max(0, math.ceil((real_end - window) / max_history)) + 1
    sampling = None if temperature is None or temperature == 1.0 else temperature  # None: argmax
    for n_outer in range(n_loops):
        start = min(n_outer * max_history, length - window)
        fill = min(n_history + n_outer * max_history, length - max_history)
        rel = fill - start
        if rel < 0:  # a window shorter than the history length (the warm-up's): Python's slicing
            rel = max(0, window + rel)  # of transformers' negative index
        buffer = x[:, start : start + window, :]  # a view: writing it writes x (transformers' copy
        # back from its input buffer into fine_input is a copy of a region onto itself)
        for codebook in range(*codebooks):
            end = window
            if sampling is None and n_outer == n_loops - 1 and codebook == codebooks[1] - 1:
                end = max(rel + 1, min(window, real_end - start))
            logits = decoder.logits(codebook, buffer, (rel, end))
            if sampling is None:
                preds = torch.argmax(logits[:, :, :codebook_size], -1)
            else:
                probs = F.softmax(logits[:, :, :codebook_size] / sampling, dim=-1)
                preds = torch.multinomial(probs.reshape((-1, codebook_size)), num_samples=1)
                preds = preds.view(int(x.shape[0]), -1)
            buffer[:, rel:end, codebook] = preds.to(torch.int32).to(x.dtype)


def fine_generate_rows(
    decoder: FineDecoder,
    coarse: torch.Tensor,
    lengths: Sequence[int],
    *,
    semantic_config: Any,
    coarse_config: Any,
    fine_config: Any,
    codebook_size: int,
    history_prompt: dict[str, torch.Tensor] | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """Fine acoustic tokens for a batch of coarse rows of different lengths.

    ``coarse``: (batch, 2 * frames) as ``BarkCoarseModel.generate`` returns it (offset ids);
    ``lengths``: each row's own length in frames. Returns (batch, 8, max frames); a row's frames
    past its length hold 0 (a valid code, so the batch can go to ``codec_decode`` with the lengths,
    which cuts them off). ``temperature`` None or 1.0 takes the argmax.

    transformers' ``BarkFineModel.generate`` pads a batch to its longest row, so a shorter row's
    window holds the longer row's extra coarse frames where, generated alone, it would hold padding;
    the model attends in both directions, so that row's tokens would change with its batch-mates.
    Here every row is padded past its own length exactly as when it is generated alone, so a row's
    tokens do not depend on the batch (up to floating-point differences between batch sizes). Rows
    that need more than one window are generated one by one.
    """
    import torch
    import torch.nn.functional as F

    n_coarse = coarse_config.n_coarse_codebooks
    n_fine = fine_config.n_fine_codebooks
    window = fine_config.max_fine_input_length
    max_history = fine_config.max_fine_history_length
    batch = coarse.shape[0]
    frames = coarse.view(batch, -1, n_coarse)
    frames = torch.remainder(frames - semantic_config.semantic_vocab_size, codebook_size)
    history = None
    n_history = 0
    if history_prompt is not None:
        history = history_prompt["fine_prompt"].T[None][:, -max_history:, :]
        n_history = int(history.shape[1])
    out = torch.zeros((batch, n_fine, frames.shape[1]), dtype=torch.int32, device=coarse.device)
    groups = [[i] for i, n in enumerate(lengths) if n_history + n > window]  # one by one
    short = [i for i, n in enumerate(lengths) if n_history + n <= window]
    for rows in groups + ([short] if short else []):
        longest = max(int(lengths[i]) for i in rows)
        x = F.pad(frames[rows, :longest, :], (0, n_fine - n_coarse), "constant", codebook_size)
        x = x.to(torch.int32)
        for k, i in enumerate(rows):
            x[k, int(lengths[i]) :, :] = codebook_size  # this row's own padding, as when alone
        if history is not None:
            x = torch.cat([history.expand(len(rows), -1, -1).to(x.dtype), x], dim=1)
        x = F.pad(x, (0, 0, 0, max(0, window - x.shape[1])), "constant", codebook_size)
        fill_windows(
            decoder,
            x,
            n_history=n_history,
            real_end=n_history + longest,
            codebooks=(n_coarse, n_fine),
            window=window,
            max_history=max_history,
            codebook_size=codebook_size,
            temperature=temperature,
        )
        for k, i in enumerate(rows):
            n = int(lengths[i])
            out[i, :, :n] = x[k, n_history : n_history + n, :].T
    return out
