"""Bark pieces measured by bench/bark_worker.py: one the engine uses, one opt-in.

``fine_generate_rows`` (used by ``synth_worker.bark.synthesizer`` for every batch)
    Bark's fine stage for a *batch* whose rows have different lengths. transformers'
    ``BarkFineModel.generate`` pads the batch to its longest row, so a shorter row's window holds the
    longer row's extra coarse frames where, generated alone, it would hold padding; the fine model
    attends in both directions, so that row's fine tokens (and audio) change with its batch-mates.
    Here every row is padded past its own length exactly as when it is generated alone, so a row's
    tokens do not depend on the batch (up to floating-point differences between batch sizes).
    Rows that need more than one fine window are generated one by one (transformers' own loop).

``reduced_precision`` (opt-in; nothing in the product uses it)
    Casts the three token models (semantic, coarse, fine) to bfloat16 or float16; the EnCodec
    decoder stays float32. Within a stated tolerance, not bit-exact: bench/bark_worker.py checks
    the top-1 agreement of each stage against float32 with teacher forcing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

TOKEN_MODELS = ("semantic", "coarse_acoustics", "fine_acoustics")


def reduced_precision(model: Any, dtype: torch.dtype) -> Any:
    """Cast ``model``'s semantic, coarse and fine transformers to ``dtype`` in place (codec stays
    float32); returns the model."""
    for name in TOKEN_MODELS:
        getattr(model, name).to(dtype)
    return model


def fine_generate_rows(
    model: Any,
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
    t_max = frames.shape[1]
    history = None
    n_history = 0
    if history_prompt is not None:
        history = history_prompt["fine_prompt"].T[None][:, -max_history:, :]
        n_history = history.shape[1]
    out = torch.zeros((batch, n_fine, t_max), dtype=torch.int32, device=coarse.device)
    short = [i for i, n in enumerate(lengths) if n_history + n <= window]
    for i in [i for i in range(batch) if i not in short]:
        n = int(lengths[i])
        row = model.fine_acoustics.generate(
            coarse[i : i + 1, : n * n_coarse],
            history_prompt=history_prompt,
            semantic_generation_config=semantic_config,
            coarse_generation_config=coarse_config,
            fine_generation_config=fine_config,
            codebook_size=codebook_size,
            temperature=temperature,
        )
        out[i, :, :n] = row[0].to(torch.int32)
    if not short:
        return out
    t_short = max(int(lengths[i]) for i in short)
    x = F.pad(frames[short, :t_short, :], (0, n_fine - n_coarse), "constant", codebook_size).to(torch.int32)
    for k, i in enumerate(short):
        x[k, int(lengths[i]) :, :] = codebook_size  # this row's own padding, as when generated alone
    if history is not None:
        x = torch.cat([history.expand(len(short), -1, -1).to(x.dtype), x], dim=1)
    x = F.pad(x, (0, 0, 0, window - x.shape[1]), "constant", codebook_size)
    start = n_history
    for codebook in range(n_coarse, n_fine):
        logits = model.fine_acoustics(codebook, x).logits
        if temperature is None or temperature == 1.0:
            preds = torch.argmax(logits[:, start:, :codebook_size], -1)
        else:
            probs = F.softmax(logits[:, :, :codebook_size] / temperature, dim=-1)[:, start:window]
            preds = torch.multinomial(probs.reshape(-1, codebook_size), 1).view(len(short), -1)
        x[:, start:, codebook] = preds.to(torch.int32)
    body = x[:, n_history:, :].transpose(1, 2)  # (rows, 8, frames)
    for k, i in enumerate(short):
        n = int(lengths[i])
        out[i, :, :n] = body[k, :, :n]
    return out
