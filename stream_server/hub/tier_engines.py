"""Builds the in-process fallback engines the configuration names (lazy imports: only what is used)."""

from __future__ import annotations

from stream_server.config import GatewayConfig
from stream_server.core.actions import WORKERS
from synth_worker.engine import Engine
from synth_worker.voices import VoiceMap


def build_local_engines(config: GatewayConfig, voices: VoiceMap) -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    for tier in config.failover.tiers:
        if tier == WORKERS:
            continue
        if tier == "espeak-ng":
            from synth_worker.espeak import EspeakEngine

            engines[tier] = EspeakEngine(voices)
        elif tier == "piper":
            from synth_worker.piper import PiperEngine

            engines[tier] = PiperEngine(voices, voice_override=config.piper_voice)
        elif tier == "elevenlabs" and config.elevenlabs_api_key:
            from synth_worker.elevenlabs import ElevenLabsEngine

            engines[tier] = ElevenLabsEngine(
                api_key=config.elevenlabs_api_key,
                base_url=config.elevenlabs_base_url,
                connect_timeout=config.cloud_connect_timeout_s,
                voices=voices,
            )
        elif tier == "edge-tts":
            from synth_worker.edge import EdgeTTSEngine

            engines[tier] = EdgeTTSEngine(
                endpoint=config.edge_tts_endpoint,
                connect_timeout=config.cloud_connect_timeout_s,
                voices=voices,
            )
    return engines


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
