"""espeak-ng engine: real speech from the real binary, streamed as it is made; WAV parsing of
streamed output."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import resample_poly

from broker.audio import rms_dbfs
from broker.errors import EngineCancelled, EngineError, EngineUnavailable
from synth_worker.engine import CancelToken, Engine, SynthesisRequest
from synth_worker.espeak import EspeakEngine, WavFormat, parse_wav, wav_format
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


class Watched(EspeakEngine):
    """The real engine, keeping each espeak-ng process it starts."""

    def __init__(self, voices: VoiceMap | None = None) -> None:
        super().__init__(voices)
        self.started: list[asyncio.subprocess.Process] = []  # given a text
        self.spawned: list[asyncio.subprocess.Process] = []

    async def _start(self, text: str, voice: str) -> asyncio.subprocess.Process:
        proc = await super()._start(text, voice)
        self.started.append(proc)
        return proc

    async def _spawn(self, voice: str) -> asyncio.subprocess.Process:
        proc = await super()._spawn(voice)
        self.spawned.append(proc)
        return proc


async def test_the_first_audio_comes_while_espeak_is_still_speaking() -> None:
    """Streamed as espeak-ng writes it: this text's audio (minutes) cannot fit the pipe and the
    reader's buffer, so espeak-ng cannot have ended when the first chunk comes (it did, before:
    the whole WAV was read first)."""
    engine = Watched()
    stream = engine._synthesize(SynthesisRequest("A sentence that goes on. " * 120, "maya"), CancelToken())
    first = await anext(stream)
    assert len(first.samples) == 960
    assert engine.started[-1].returncode is None
    await stream.aclose()  # a consumer that stops: the process is killed and reaped
    assert engine.started[-1].returncode is not None


async def test_the_stream_is_the_whole_wav_at_one_gain_resampled_without_seams() -> None:
    """What the chunks add up to is espeak-ng's whole WAV times the voice's one gain, resampled in
    one piece: no sample lost or doubled where reads and chunks meet, no level moving."""
    engine = Watched()
    text = "Streaming keeps every sample, and the level stays where it was put. " * 3
    streamed = await speak(engine, text, 24_000, "maya")
    assert len(engine.started) == 2  # the voice's calibration, then the sentence
    voice = engine.voices.get("maya").espeak_voice
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng", "--stdout", "-v", voice, text, stdout=asyncio.subprocess.PIPE
    )  # fmt: skip
    wav = parse_wav((await proc.communicate())[0])
    expected = resample_poly(
        np.clip(wav.samples * engine._gains[voice], -0.99, 0.99), 160, 147
    )  # 22.05k -> 24k
    assert len(streamed) == len(expected)
    assert np.allclose(streamed, expected, atol=1e-4)
    await speak(engine, "Once more.", 24_000, "maya")
    assert len(engine.started) == 3  # the gain is measured once a voice


async def test_the_warm_up_measures_every_voice_of_the_map() -> None:
    voices = VoiceMap(
        {**VoiceMap().voices, "odd": Voice("odd", None, "x", "x", "zz-nonexistent")}, default="maya"
    )
    engine = Watched(voices)
    await engine.warm_up()  # the odd voice fails its own requests only
    assert set(engine._gains) == {"en-us+f3", "en-us+m3"}
    started = len(engine.started)
    await speak(engine, "Hello.", voice="miles")
    assert len(engine.started) == started + 1  # no calibration on the way to its first audio


async def test_a_voice_s_next_request_finds_espeak_started() -> None:
    """Starting espeak-ng (exec, its data, the voice) is ~6 ms of a first audio: after a request the
    voice's next process is started, waiting for its text (before: one started per request)."""
    engine = Watched()
    await speak(engine, "Hello.")
    spare = engine.spawned[-1]
    stream = engine._synthesize(SynthesisRequest("Hello again.", "maya"), CancelToken())
    await anext(stream)
    assert engine.started[-1] is spare and engine.spawned[-1] is spare  # none started for it
    await stream.aclose()
    await speak(engine, "And again.")
    spare = engine.spawned[-1]
    spare.kill()  # a spare that died is not used: the next request starts its own
    await spare.wait()
    assert len(await speak(engine, "Still here.")) > 0
    assert engine.started[-1] is not spare
    engine.close()  # the spares go with the engine
    async with asyncio.timeout(T):
        await engine.spawned[-1].wait()


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


@given(st.integers(0, 200), st.booleans())
def test_a_wav_header_read_in_pieces_is_known_once_it_is_all_there(cut: int, extra_chunk: bool) -> None:
    data = _wav(np.zeros(40, dtype=np.float32), extra_chunk=extra_chunk)
    header_end = 44 + (12 if extra_chunk else 0)
    found = wav_format(data[:cut])
    assert found == (WavFormat(22_050, 1, header_end) if cut >= header_end else None)


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
