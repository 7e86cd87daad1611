"""Piper engine: real speech from the packaged voice through the child process; typed failures."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from broker.audio import rms_dbfs
from broker.errors import EngineCancelled, EngineError, EngineUnavailable
from synth_worker.config import WorkerConfig
from synth_worker.engine import CancelToken, Engine, SynthesisRequest
from synth_worker.piper import PiperEngine
from synth_worker.piper_process import packaged_model
from synth_worker.piper_threads import PiperThreads
from synth_worker.voices import DEFAULT_VOICES, Voice, VoiceMap
from synth_worker.worker.process import worker_engine
from tests.conftest import T

pytest.importorskip("piper", reason="piper-tts is the 'piper' extra")

LONG = "Hello. This is a longer sentence with quite a few more words in it, spoken by Piper."


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[PiperEngine]:
    eng = PiperEngine()
    await eng.load()
    yield eng
    await eng.aclose()


async def speak(engine: PiperEngine, text: str, rate: int = 24_000, voice: str = "maya") -> np.ndarray:
    chunks = [c async for c in engine.synthesize(SynthesisRequest(text, voice, rate), CancelToken())]
    assert {c.sample_rate for c in chunks} == {rate}
    return np.concatenate([c.samples for c in chunks])


@pytest.mark.asyncio(loop_scope="session")
async def test_speaks_non_silent_24khz_audio_whose_length_fits_the_text(engine: PiperEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.model == "piper en_US-joe-medium"
    short = await speak(engine, "Hello.")
    long = await speak(engine, LONG)
    assert 0.2 < len(short) / 24_000 < 1.5
    assert 3.0 < len(long) / 24_000 < 9.0  # ~80 characters at 10-25 characters a second
    assert rms_dbfs(long) == pytest.approx(-20.0, abs=1.5)  # loudness-matched, not silence
    assert float(np.max(np.abs(long))) <= 1.0


@pytest.mark.asyncio(loop_scope="session")
async def test_resamples_to_the_requested_rate_in_40ms_chunks(engine: PiperEngine) -> None:
    chunks = [c async for c in engine.synthesize(SynthesisRequest("Testing.", "miles", 8_000), CancelToken())]
    assert all(len(c.samples) == 320 for c in chunks[:-1])
    at_8k = sum(len(c.samples) for c in chunks)
    at_48k = len(await speak(engine, "Testing.", 48_000, "miles"))
    # Piper's VITS model samples its durations: the same text differs a little from run to run.
    assert at_48k == pytest.approx(6 * at_8k, rel=0.25)


@pytest.mark.asyncio(loop_scope="session")
async def test_concurrent_requests_each_get_their_own_audio(engine: PiperEngine) -> None:
    short, long = await asyncio.gather(speak(engine, "Yes."), speak(engine, LONG))
    assert len(short) / 24_000 < 1.2
    assert len(long) / 24_000 > 3.0


@pytest.mark.asyncio(loop_scope="session")
async def test_cancel_mid_sentence_stops_the_stream(engine: PiperEngine) -> None:
    token = CancelToken()
    got = 0
    loop = asyncio.get_running_loop()
    with pytest.raises(EngineCancelled):
        async with asyncio.timeout(T):
            async for _ in engine.synthesize(SynthesisRequest(LONG, "maya"), token):
                got += 1
                if got == 3:
                    token.cancel()
    assert got == 3  # nothing after the cancel
    # A request cancelled while Piper computes it ends at once, and the child keeps serving.
    token = CancelToken()
    loop.call_soon(token.cancel)
    start = loop.time()
    with pytest.raises(EngineCancelled):
        async for _ in engine.synthesize(SynthesisRequest("word " * 150, "maya"), token):
            pass
    assert loop.time() - start < T
    assert len(await speak(engine, "Still here.")) > 0


@pytest.mark.asyncio(loop_scope="session")
async def test_text_without_speech_is_an_engine_error(engine: PiperEngine) -> None:
    with pytest.raises(EngineError, match="no audio"):
        await speak(engine, "...")
    with pytest.raises(EngineError) as info:
        await speak(engine, "   ")
    assert info.value.code == "empty_text"


async def test_missing_voice_files_are_engine_unavailable_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "en_US-nobody-medium.onnx"
    engine = PiperEngine(voice_override=str(missing))
    assert not engine.available
    with pytest.raises(EngineUnavailable, match=f"Piper voice file missing: {missing}"):
        await engine.load()
    with pytest.raises(EngineUnavailable, match="missing"):
        await speak(engine, "Hello.")
    # A model without its .onnx.json beside it is missing a file too.
    missing.write_bytes(b"not a model")
    with pytest.raises(EngineUnavailable, match=r"\.onnx\.json"):
        await engine.load()


async def test_a_model_piper_cannot_load_is_unavailable_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx model")
    shutil.copy(packaged_model().config, tmp_path / "broken.onnx.json")
    engine = PiperEngine(voice_override=str(bad))
    with pytest.raises(EngineUnavailable, match="Piper cannot load") as info:
        await engine.load()
    assert str(bad) in str(info.value)
    await engine.aclose()


async def test_sesame_piper_voice_points_at_another_model_on_disk(tmp_path: Path) -> None:
    model = packaged_model()
    copy = tmp_path / "en_US-copy-medium.onnx"
    shutil.copy(model.onnx, copy)
    shutil.copy(model.config, tmp_path / "en_US-copy-medium.onnx.json")
    engine = worker_engine(
        WorkerConfig.from_env({"SESAME_ENGINE": "piper", "SESAME_PIPER_VOICE": str(copy)}, worker_id="w-1")
    )
    assert isinstance(engine, PiperEngine)
    try:
        await engine.load()
        assert engine.model == "piper en_US-copy-medium"
        assert len(await speak(engine, "Hello.")) > 0
    finally:
        await engine.aclose()


async def test_a_voice_without_a_piper_voice_is_refused() -> None:
    voices = VoiceMap({"odd": Voice("odd", None, "x", "x", "en-us", None), **DEFAULT_VOICES})
    with pytest.raises(EngineError) as info:
        await speak(PiperEngine(voices), "Hello.", voice="odd")
    assert info.value.code == "unknown_voice"


async def test_a_dead_child_fails_its_request_and_is_restarted() -> None:
    engine = PiperEngine()
    try:
        await engine.load()
        (child,) = engine._children.values()
        child.kill()
        with pytest.raises(EngineError, match="Piper exited"):
            await speak(engine, LONG)
        assert len(await speak(engine, "Back again.")) > 0
    finally:
        await engine.aclose()


def test_worker_settings_select_piper() -> None:
    from broker.errors import ConfigError

    config = WorkerConfig.from_env(
        {"SESAME_ENGINE": "PIPER", "SESAME_PIPER_VOICE": "/m/x.onnx", "SESAME_PIPER_THREADS": "2"},
        worker_id="w-1",
    )
    assert (config.engine, config.piper_voice) == ("piper", "/m/x.onnx")
    assert config.piper_threads == PiperThreads(2, 2)
    engine = worker_engine(config)
    assert isinstance(engine, PiperEngine) and engine.voice_override == "/m/x.onnx"
    assert engine.threads == PiperThreads.fixed(2)
    with pytest.raises(ConfigError, match="SESAME_PIPER_THREADS"):
        WorkerConfig.from_env({"SESAME_ENGINE": "piper", "SESAME_PIPER_THREADS": "-1"}, worker_id="w-1")
    with pytest.raises(ConfigError, match="SESAME_ENGINE"):
        WorkerConfig.from_env({"SESAME_ENGINE": "pipe"}, worker_id="w-1")


def test_the_voice_map_gives_every_built_in_voice_the_packaged_piper_voice() -> None:
    assert {v.piper_voice for v in DEFAULT_VOICES.values()} == {"en_US-joe-medium"}
    assert packaged_model().onnx.name == "en_US-joe-medium.onnx"


async def test_without_piper_tts_the_engine_is_unavailable_and_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "piper" else real(name, *a)
    )
    engine = PiperEngine()
    assert not engine.available
    with pytest.raises(
        EngineUnavailable, match=r"piper-tts is not installed \(pip install 'sesame-voice\[piper\]'\)"
    ):
        await engine.load()
