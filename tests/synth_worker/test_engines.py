"""The one engine factory: each engine built from ``EngineSettings``, for the worker and for the
gateway's tiers, and nothing heavy imported by a gateway that has no Bark."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.errors import ConfigError
from stream_server.config import GatewayConfig
from stream_server.hub.tier_engines import build_local_engines
from synth_worker.config import WorkerConfig
from synth_worker.edge import EdgeTTSEngine
from synth_worker.elevenlabs import ElevenLabsEngine
from synth_worker.engines import EngineSettings, build_engine, build_worker_engine
from synth_worker.espeak import EspeakEngine
from synth_worker.piper import PiperEngine
from synth_worker.piper_threads import PiperThreads
from synth_worker.voices import VoiceMap

THREE = PiperThreads.fixed(3)
SETTINGS = EngineSettings(
    chunk_ms=20,
    piper_voice="/m/x.onnx",
    piper_threads=3,
    elevenlabs_api_key="k",
    elevenlabs_base_url="http://127.0.0.1:9/",
    edge_tts_endpoint="ws://127.0.0.1:9/edge",
    cloud_connect_timeout_s=0.5,
)


@pytest.mark.parametrize(
    ("name", "kind", "fields"),
    [
        ("espeak-ng", EspeakEngine, {"chunk_ms": 20}),
        ("piper", PiperEngine, {"voice_override": "/m/x.onnx", "threads": THREE, "chunk_ms": 20}),
        ("elevenlabs", ElevenLabsEngine, {"base_url": "http://127.0.0.1:9", "connect_timeout": 0.5}),
        ("edge-tts", EdgeTTSEngine, {"endpoint": "ws://127.0.0.1:9/edge"}),
    ],
)
def test_each_engine_is_built_from_the_settings(name: str, kind: type, fields: dict[str, object]) -> None:
    engine = build_engine(name, VoiceMap(), SETTINGS)
    assert isinstance(engine, kind)
    assert {k: getattr(engine, k) for k in fields} == fields


def test_what_cannot_be_built_says_why() -> None:
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        build_engine("elevenlabs", VoiceMap(), EngineSettings())
    with pytest.raises(ConfigError, match="not a worker engine"):
        build_worker_engine("edge-tts", VoiceMap(), SETTINGS)


def test_the_gateway_tiers_come_from_the_same_factory() -> None:
    config = GatewayConfig.from_env({"SESAME_TIERS": "workers,elevenlabs,edge-tts,piper,espeak-ng"})
    engines = build_local_engines(config, VoiceMap())
    assert list(engines) == ["edge-tts", "piper", "espeak-ng"]  # ElevenLabs only with its key
    assert isinstance(engines["piper"], PiperEngine) and engines["piper"].threads == PiperThreads.fixed(1)


def test_the_engine_nice_reaches_the_children_of_worker_and_gateway_engines() -> None:
    """SESAME_ENGINE_NICE (synth_worker/child_priority.py): 19 unless set, 0-19."""
    for env, nice in (({}, 19), ({"SESAME_ENGINE_NICE": "7"}, 7), ({"SESAME_ENGINE_NICE": "0"}, 0)):
        worker = WorkerConfig.from_env(env, worker_id="w-1").engine_settings()
        tiers = GatewayConfig.from_env({"SESAME_TIERS": "workers,piper,espeak-ng", **env})
        gateway = build_local_engines(tiers, VoiceMap())
        built = (build_worker_engine("espeak-ng", VoiceMap(), worker), *gateway.values())
        children = [e.child_nice for e in built if isinstance(e, EspeakEngine | PiperEngine)]
        assert children == [nice] * 3
    for bad in ("20", "-1", "low"):
        with pytest.raises(ConfigError, match="SESAME_ENGINE_NICE"):
            WorkerConfig.from_env({"SESAME_ENGINE_NICE": bad})
        with pytest.raises(ConfigError, match="SESAME_ENGINE_NICE"):
            GatewayConfig.from_env({"SESAME_ENGINE_NICE": bad})


def test_building_the_gateway_s_engines_imports_no_torch() -> None:
    code = (
        "import sys; from stream_server.config import GatewayConfig; "
        "from stream_server.hub.tier_engines import build_local_engines; "
        "from synth_worker.voices import VoiceMap; "
        "build_local_engines(GatewayConfig.from_env({}), VoiceMap()); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
