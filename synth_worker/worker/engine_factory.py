"""The engine a worker runs, built from its configuration."""

from __future__ import annotations

from typing import Protocol

from synth_worker.config import WorkerConfig
from synth_worker.engine import Engine
from synth_worker.voices import VoiceMap


class WorkerEngine(Engine, Protocol):
    """What the worker needs from an engine beyond ``Engine``: explicit load and warm-up."""

    @property
    def model(self) -> str: ...

    async def load(self) -> float:
        """Get ready to speak (load a model, find a binary); seconds taken. Raises EngineUnavailable."""
        ...

    async def warm_up(self) -> float:
        """One short synthesis; seconds taken."""
        ...

    def close(self) -> None: ...


def build_engine(config: WorkerConfig) -> WorkerEngine:
    voices = VoiceMap.load(config.voices_path)
    if config.engine == "espeak-ng":
        from synth_worker.espeak import EspeakEngine

        return EspeakEngine(voices, chunk_ms=config.chunk_ms)
    if config.engine == "piper":
        from synth_worker.piper import PiperEngine

        return PiperEngine(
            voices, voice_override=config.piper_voice, threads=config.piper_threads, chunk_ms=config.chunk_ms
        )
    from synth_worker.bark.engine import BarkEngine
    from synth_worker.bark.settings import BarkSettings

    settings = BarkSettings(
        model=config.model,
        cache_dir=config.model_cache,
        device=config.device,
        temperature=config.temperature,
        semantic_max_tokens=config.semantic_max_tokens,
        torch_threads=config.torch_threads,
        chunk_ms=config.chunk_ms,
        max_batch=config.max_batch,
        seed=config.seed,
        decoder=config.bark_decoder,
        step_mode=config.bark_step,
    )
    return BarkEngine(settings, voices, default_speaker=config.speaker_id)
