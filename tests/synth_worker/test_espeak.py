"""espeak-ng engine: real speech from the real binary; WAV parsing of streamed output."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from broker.audio import rms_dbfs
from broker.errors import EngineCancelled, EngineError, EngineUnavailable
from synth_worker.engine import CancelToken, Engine, SynthesisRequest
from synth_worker.espeak import EspeakEngine, parse_wav
from synth_worker.voices import Voice, VoiceMap
from tests.conftest import T


async def speak(engine: EspeakEngine, text: str, rate: int = 24_000, voice: str = "maya") -> np.ndarray:
    chunks = [c async for c in engine.synthesize(SynthesisRequest(text, voice, rate), CancelToken())]
    assert {c.sample_rate for c in chunks} == {rate}
    return np.concatenate([c.samples for c in chunks])


async def test_speaks_non_silent_audio_of_plausible_length() -> None:
    engine = EspeakEngine()
    assert isinstance(engine, Engine)
    await engine.load()
    assert engine.model.startswith("espeak-ng 1.")
    short = await speak(engine, "Hello.")
    long = await speak(engine, "Hello. This is a longer sentence with quite a few more words in it.")
    assert 0.2 < len(short) / 24_000 < 1.5
    assert 2.5 < len(long) / 24_000 < 8.0
    assert rms_dbfs(long) == pytest.approx(-20.0, abs=1.5)  # loudness-normalized


async def test_resamples_to_the_requested_rate_in_40ms_chunks() -> None:
    engine = EspeakEngine()
    chunks = [c async for c in engine.synthesize(SynthesisRequest("Testing.", "miles", 8_000), CancelToken())]
    assert all(len(c.samples) == 320 for c in chunks[:-1])
    at_8k = sum(len(c.samples) for c in chunks)
    at_48k = len(await speak(engine, "Testing.", 48_000, "miles"))
    assert at_48k == pytest.approx(6 * at_8k, rel=0.01)


async def test_text_that_looks_like_a_flag_is_spoken() -> None:
    audio = await speak(EspeakEngine(), "--version -w /tmp/x.wav")
    assert len(audio) / 24_000 > 0.5


async def test_missing_binary_is_engine_unavailable() -> None:
    engine = EspeakEngine(binary="espeak-ng-not-installed")
    assert not engine.available
    with pytest.raises(EngineUnavailable, match="not installed"):
        await engine.load()
    with pytest.raises(EngineUnavailable):
        await speak(engine, "Hello.")


async def test_unknown_espeak_voice_is_an_engine_error() -> None:
    voices = VoiceMap({"odd": Voice("odd", None, "x", "x", "zz-nonexistent")}, default="odd")
    with pytest.raises(EngineError) as info:
        await speak(EspeakEngine(voices), "Hello.", voice="odd")
    assert info.value.code == "unknown_voice"


async def test_cancel_kills_the_process() -> None:
    engine = EspeakEngine()
    token = CancelToken()
    stream = engine.synthesize(SynthesisRequest("word " * 3000, "maya"), token)

    loop = asyncio.get_running_loop()
    loop.call_later(0.05, token.cancel)
    start = loop.time()
    with pytest.raises(EngineCancelled):
        async with asyncio.timeout(T):
            async for _ in stream:
                pass
    assert loop.time() - start < T


def _wav(
    samples: np.ndarray, rate: int = 22_050, placeholder: bool = True, extra_chunk: bool = False
) -> bytes:
    pcm = (samples * 32767).astype("<i2").tobytes()
    size = 0xFFFFFFFF if placeholder else len(pcm)
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    extra = struct.pack("<4sI", b"LIST", 3) + b"abc\x00" if extra_chunk else b""
    return b"RIFF" + struct.pack("<I", size) + b"WAVE" + fmt + extra + b"data" + struct.pack("<I", size) + pcm


@pytest.mark.parametrize("placeholder", [True, False])
@pytest.mark.parametrize("extra_chunk", [True, False])
def test_parse_wav_ignores_placeholder_sizes(placeholder: bool, extra_chunk: bool) -> None:
    samples = np.linspace(-0.5, 0.5, 1001, dtype=np.float32)
    wav = parse_wav(_wav(samples, placeholder=placeholder, extra_chunk=extra_chunk))
    assert wav.sample_rate == 22_050 and wav.channels == 1
    assert len(wav.samples) == 1001
    assert np.allclose(wav.samples, samples, atol=1e-4)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF",
        b"RIFF\x00\x00\x00\x00WAVX",
        b"RIFF\xff\xff\xff\xffWAVEdata\x00\x00\x00\x00",
        b"not a wav at all",
    ],
)
def test_parse_wav_rejects_non_wavs(data: bytes) -> None:
    with pytest.raises(EngineError):
        parse_wav(data)
