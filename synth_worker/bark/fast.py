"""A Bark speed-up measured by bench/bark_worker.py and not adopted (the fine stage the engine
uses, batched by rows, is ``synth_worker.bark.fine``).

``reduced_precision`` (opt-in; nothing in the product uses it)
    Casts the three token models (semantic, coarse, fine) to bfloat16 or float16; the EnCodec
    decoder stays float32. Within a stated tolerance, not bit-exact: bench/bark_worker.py checks
    the top-1 agreement of each stage against float32 with teacher forcing.
"""

from __future__ import annotations

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
