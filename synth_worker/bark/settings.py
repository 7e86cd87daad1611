"""Bark's settings and the constants they rest on (what ``synth_worker.config`` reads).

Semantic generation is always capped: random weights never emit the end token, and real weights
can ramble. The cap follows the text's length (``chars_per_second`` of speech, 49.9 semantic tokens
per second, plus half a second) and never exceeds ``semantic_max_tokens`` (Bark's context allows
767 after its 257-token prompt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from broker.errors import EngineUnavailable
from synth_worker.bark.decode import StepMode

DEFAULT_MODEL = "suno/bark-small"
SEMANTIC_RATE_HZ = 49.9
MAX_SEMANTIC_TOKENS = 767  # 1024 positions - 257 prompt positions

Speaker = int | str | None
DecoderName = Literal["static", "generate"]
DECODERS: tuple[DecoderName, ...] = ("static", "generate")


@dataclass(frozen=True, slots=True)
class BarkSettings:
    model: str = DEFAULT_MODEL  # a checkpoint directory or a hub id found in the local cache
    cache_dir: str | None = None  # the HF cache to look in (None: the default one)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    temperature: float = 0.7
    semantic_max_tokens: int = MAX_SEMANTIC_TOKENS
    chars_per_second: float = 12.0  # a slow speaking rate, so the cap rarely cuts real speech
    torch_threads: int = 0  # 0: one fewer than the cores (at least 1), leaving one for the event loop
    chunk_ms: int = 40
    max_batch: int = 1
    seed: int | None = None  # fixed sampling seed (tests); None: unseeded
    decoder: DecoderName = "static"  # semantic/coarse loop: bark_stages (static KV cache) or generate()
    step_mode: StepMode = "auto"  # static decoder's per-token step: auto | eager | cuda-graph | compile


def semantic_cap(text: str, settings: BarkSettings) -> int:
    """How many semantic tokens ``text`` may need: its length at a slow speaking rate + 0.5 s."""
    seconds = len(text) / max(1.0, settings.chars_per_second) + 0.5
    return max(
        8, min(settings.semantic_max_tokens, MAX_SEMANTIC_TOKENS, math.ceil(seconds * SEMANTIC_RATE_HZ))
    )


def resolve_model_dir(model: str, cache_dir: str | None) -> Path:
    """A checkpoint directory, or a hub id resolved from the local cache only (nothing is downloaded)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EngineUnavailable(f"model directory {path} has no config.json")
        return path
    if model.startswith(("/", ".", "~")) or path.exists():
        raise EngineUnavailable(f"model directory {path} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(model, cache_dir=cache_dir, local_files_only=True))
    except (OSError, ValueError, HFValidationError) as exc:
        where = cache_dir or "the default Hugging Face cache"
        raise EngineUnavailable(
            f"model {model!r} is not in {where}; weights are never downloaded at run time: put the model "
            "in the cache (SESAME_MODEL_CACHE) or point SESAME_MODEL at a checkpoint directory "
            "(`sesame-voice build-dev-model DIR` writes a small one)"
        ) from exc
