"""The gateway's in-process fallback engines: which tiers the configuration names, each built by the
one engine factory (``synth_worker.engines``, lazy imports: only what is used)."""

from __future__ import annotations

from stream_server.config import GatewayConfig
from stream_server.core.actions import WORKERS
from synth_worker.engine import Engine
from synth_worker.engines import EngineSettings, build_engine
from synth_worker.voices import VoiceMap


def tier_settings(config: GatewayConfig) -> EngineSettings:
    return EngineSettings(
        piper_voice=config.piper_voice,
        child_nice=config.engine_nice,
        elevenlabs_api_key=config.elevenlabs_api_key,
        elevenlabs_base_url=config.elevenlabs_base_url,
        edge_tts_endpoint=config.edge_tts_endpoint,
        cloud_connect_timeout_s=config.cloud_connect_timeout_s,
    )


def build_local_engines(config: GatewayConfig, voices: VoiceMap) -> dict[str, Engine]:
    """Every in-process tier of SESAME_TIERS (ElevenLabs only with its key)."""
    settings = tier_settings(config)
    return {
        tier: build_engine(tier, voices, settings)
        for tier in config.failover.tiers
        if tier != WORKERS and (tier != "elevenlabs" or config.elevenlabs_api_key)
    }
