"""The one engine factory: builds each engine (espeak-ng, Piper, Bark, ElevenLabs, edge-tts) from
``EngineSettings``, for a worker (``build_worker_engine``: the engines that load a model) and for
the gateway's in-process tiers (``build_engine``; ``stream_server/hub/tier_engines.py`` picks the
tiers). Each engine's module is imported only when that engine is built: a gateway without Bark
never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from broker.errors import ConfigError
from synth_worker.child_priority import DEFAULT_NICE
from synth_worker.engine import Engine
from synth_worker.piper_threads import PiperThreads
from synth_worker.voices import VoiceMap

if TYPE_CHECKING:
    from synth_worker.bark.settings import BarkSettings


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


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What building an engine takes; each process fills in what its settings say."""

    chunk_ms: int = 40
    piper_voice: str | None = None  # SESAME_PIPER_VOICE: a Piper .onnx model instead of the voice map's
    piper_threads: int | PiperThreads = 1  # a worker's: synth_worker.piper_threads
    child_nice: int = DEFAULT_NICE  # SESAME_ENGINE_NICE: espeak-ng's and Piper's child processes
    elevenlabs_api_key: str | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    edge_tts_endpoint: str | None = None
    cloud_connect_timeout_s: float = 1.5
    bark: BarkSettings | None = None
    bark_speaker: int | str | None = None  # SESAME_SPEAKER_ID: the Bark speaker prompt for every voice


WORKER_ENGINES = ("bark", "piper", "espeak-ng")


def build_worker_engine(name: str, voices: VoiceMap, settings: EngineSettings) -> WorkerEngine:
    if name == "espeak-ng":
        from synth_worker.espeak import EspeakEngine

        return EspeakEngine(voices, chunk_ms=settings.chunk_ms, child_nice=settings.child_nice)
    if name == "piper":
        from synth_worker.piper import PiperEngine

        return PiperEngine(
            voices,
            voice_override=settings.piper_voice,
            threads=settings.piper_threads,
            chunk_ms=settings.chunk_ms,
            child_nice=settings.child_nice,
        )
    if name == "bark":
        from synth_worker.bark.engine import BarkEngine
        from synth_worker.bark.settings import BarkSettings

        return BarkEngine(settings.bark or BarkSettings(), voices, default_speaker=settings.bark_speaker)
    raise ConfigError(f"{name!r} is not a worker engine ({', '.join(WORKER_ENGINES)})")


def build_engine(name: str, voices: VoiceMap, settings: EngineSettings) -> Engine:
    """Any engine by its tier name; the cloud ones need their settings (ElevenLabs its key)."""
    if name == "elevenlabs":
        from synth_worker.elevenlabs import ElevenLabsEngine

        if not settings.elevenlabs_api_key:
            raise ConfigError("the elevenlabs engine needs ELEVENLABS_API_KEY")
        return ElevenLabsEngine(
            api_key=settings.elevenlabs_api_key,
            base_url=settings.elevenlabs_base_url,
            connect_timeout=settings.cloud_connect_timeout_s,
            voices=voices,
        )
    if name == "edge-tts":
        from synth_worker.edge import EdgeTTSEngine

        return EdgeTTSEngine(
            endpoint=settings.edge_tts_endpoint,
            connect_timeout=settings.cloud_connect_timeout_s,
            voices=voices,
        )
    return build_worker_engine(name, voices, settings)


async def close_engines(engines: dict[str, Engine]) -> None:
    """Release what engines hold (pooled HTTP connections, subprocesses)."""
    for engine in engines.values():
        aclose = getattr(engine, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            close = getattr(engine, "close", None)
            if close is not None:
                close()
