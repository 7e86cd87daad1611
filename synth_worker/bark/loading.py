"""What loading Bark needs besides the checkpoint: a quiet transformers, the device, the thread count."""

from __future__ import annotations

import os
from typing import Any

from broker.errors import EngineUnavailable


def quiet_transformers() -> None:
    """transformers warns about generation arguments Bark's own code passes, and draws progress bars."""
    from transformers.utils import logging

    hf_logging: Any = logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineUnavailable(f"SESAME_DEVICE={requested} but this torch build sees no CUDA device")
        return requested
    if requested == "cpu":
        return "cpu"
    raise EngineUnavailable(f"SESAME_DEVICE={requested!r} is not auto, cpu or cuda")


def torch_threads(requested: int) -> int:
    if requested > 0:
        return requested
    return max(1, (os.cpu_count() or 2) - 1)
