"""ElevenLabsEngine against the loopback stand-in that speaks ElevenLabs' streaming HTTP API."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from broker.audio import rms_dbfs
from broker.errors import ConfigError, EngineCancelled, EngineError, EngineTimeout, EngineUnavailable
from synth_worker.elevenlabs import ElevenLabsEngine, VoiceSettings, choose_pcm_rate
from synth_worker.engine import CancelToken, Engine, EngineChunk, SynthesisRequest
from synth_worker.voices import DEFAULT_VOICES
from tests.cloud.elevenlabs_server import ElevenLabsStandIn
from tests.cloud.speech import speech
from tests.conftest import T

TEXT = "The quick brown fox jumps over the lazy dog."
SHORT = 0.3  # the deadlines under test; errors are asserted by type, never by elapsed time


def engine(server: ElevenLabsStandIn, **kwargs: object) -> ElevenLabsEngine:
    settings: dict[str, object] = {"first_byte_timeout": T, "stall_timeout": T}
    settings.update(kwargs)
    return ElevenLabsEngine(server.api_key, server.base_url, **settings)  # type: ignore[arg-type]


async def collect(
    eng: ElevenLabsEngine, text: str = TEXT, rate: int = 24_000, cancel: CancelToken | None = None
) -> list[EngineChunk]:
    async with asyncio.timeout(T):
        return [
            c async for c in eng.synthesize(SynthesisRequest(text, "maya", rate), cancel or CancelToken())
        ]


@pytest.mark.parametrize(
    ("rate", "asked"), [(24_000, 24_000), (16_000, 16_000), (48_000, 24_000), (8_000, 16_000)]
)
async def test_speaks_at_the_requested_rate(
    elevenlabs_server: ElevenLabsStandIn,
    rate: int,
    asked: int,
) -> None:
    eng = engine(elevenlabs_server)
    try:
        chunks = await collect(eng, rate=rate)
    finally:
        await eng.aclose()
    assert isinstance(eng, Engine)
    assert {c.sample_rate for c in chunks} == {rate}
    step = rate * 40 // 1000
    assert all(len(c.samples) == step for c in chunks[:-1]) and 0 < len(chunks[-1].samples) <= step
    audio = np.concatenate([c.samples for c in chunks])
    assert audio.dtype == np.float32 and float(np.max(np.abs(audio))) < 1.0
    expected_s = len(speech(TEXT, rate)) / rate
    assert abs(len(audio) / rate - expected_s) < 0.05
    assert -26.0 < rms_dbfs(audio) < -16.0  # loudness-matched to TARGET_RMS_DBFS (-20), pauses included
    seen = elevenlabs_server.requests[-1]
    assert seen.voice_id == DEFAULT_VOICES["maya"].elevenlabs_voice_id
    assert seen.query == {"output_format": f"pcm_{asked}"}
    assert seen.key_ok and seen.body == {"text": TEXT, "model_id": "eleven_flash_v2_5"}


async def test_voice_settings_and_model_are_sent(elevenlabs_server: ElevenLabsStandIn) -> None:
    settings = VoiceSettings(
        stability=0.3, similarity_boost=0.9, style=0.1, use_speaker_boost=False, speed=1.1
    )
    eng = engine(elevenlabs_server, model_id="eleven_turbo_v2_5", voice_settings=settings)
    try:
        assert await collect(eng, "Hi.")
    finally:
        await eng.aclose()
    body = elevenlabs_server.requests[-1].body
    assert body["model_id"] == "eleven_turbo_v2_5"
    assert body["voice_settings"] == {
        "stability": 0.3,
        "similarity_boost": 0.9,
        "style": 0.1,
        "use_speaker_boost": False,
        "speed": 1.1,
    }


@pytest.mark.parametrize(
    ("mode", "deadlines", "error", "code"),
    [
        ("401", {}, EngineUnavailable, "auth_failed"),
        ("429", {}, EngineError, "rate_limited"),
        ("500", {}, EngineError, "upstream_error"),
        ("silence", {"first_byte_timeout": SHORT}, EngineTimeout, "first_byte_timeout"),
        ("stall", {"stall_timeout": SHORT}, EngineTimeout, "stall"),
        ("die", {}, EngineError, "stream_broken"),
    ],
)
async def test_failures_are_typed(
    elevenlabs_server: ElevenLabsStandIn,
    mode: str,
    deadlines: dict[str, float],
    error: type[EngineError],
    code: str,
) -> None:
    elevenlabs_server.mode = mode  # type: ignore[assignment]
    eng = engine(elevenlabs_server, **deadlines)
    try:
        with pytest.raises(EngineError) as caught:
            await collect(eng)  # bounded by T; the deadline under test is SHORT
    finally:
        await eng.aclose()
    assert type(caught.value) is error
    assert caught.value.code == code
    assert elevenlabs_server.api_key not in str(caught.value)


async def test_audio_before_a_stall_or_drop_is_delivered(elevenlabs_server: ElevenLabsStandIn) -> None:
    elevenlabs_server.mode = "die"
    eng = engine(elevenlabs_server)
    got: list[EngineChunk] = []
    try:
        with pytest.raises(EngineError):
            async with asyncio.timeout(T):
                async for chunk in eng.synthesize(SynthesisRequest(TEXT, "maya"), CancelToken()):
                    got.append(chunk)  # noqa: PERF401 (keep what came before the error)
    finally:
        await eng.aclose()
    assert got and rms_dbfs(np.concatenate([c.samples for c in got])) > -40


async def test_wrong_key_is_auth_failed_and_never_shown(elevenlabs_server: ElevenLabsStandIn) -> None:
    secret = "sk-wrong-key-do-not-print"
    eng = ElevenLabsEngine(secret, elevenlabs_server.base_url)
    try:
        with pytest.raises(EngineUnavailable) as caught:
            await collect(eng)
    finally:
        await eng.aclose()
    assert caught.value.code == "auth_failed"
    assert "invalid_api_key" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(eng)
    assert not elevenlabs_server.requests[-1].key_ok


async def test_refused_port_is_unavailable(refused_port: int) -> None:
    eng = ElevenLabsEngine("k", f"http://127.0.0.1:{refused_port}")
    try:
        with pytest.raises(EngineUnavailable) as caught:
            await collect(eng)
    finally:
        await eng.aclose()
    assert caught.value.code == "unreachable"


async def test_unanswered_connect_costs_only_the_connect_timeout(blackhole_port: int) -> None:
    eng = ElevenLabsEngine(
        "k", f"http://127.0.0.1:{blackhole_port}", connect_timeout=SHORT, first_byte_timeout=T
    )
    try:
        with pytest.raises(EngineUnavailable) as caught:
            await collect(eng)  # bounded by T; a first-byte timeout would be EngineTimeout instead
    finally:
        await eng.aclose()
    assert caught.value.code == "connect_timeout"


async def test_cancel_mid_stream_stops_and_hangs_up(elevenlabs_server: ElevenLabsStandIn) -> None:
    elevenlabs_server.mode = "stall"  # sends some audio, then keeps the connection open
    eng = engine(elevenlabs_server, stall_timeout=T * 2)
    cancel = CancelToken()
    got = 0
    try:
        with pytest.raises(EngineCancelled):
            async with asyncio.timeout(T):
                async for _ in eng.synthesize(SynthesisRequest(TEXT, "maya"), cancel):
                    got += 1
                    cancel.cancel()
    finally:
        await eng.aclose()
    assert got == 1
    assert await asyncio.to_thread(elevenlabs_server.disconnected.wait, T)


async def test_cancel_while_the_server_is_silent(elevenlabs_server: ElevenLabsStandIn) -> None:
    elevenlabs_server.mode = "silence"
    eng = engine(elevenlabs_server, first_byte_timeout=T * 2)
    cancel = CancelToken()

    async def cancel_when_asked() -> None:
        assert await asyncio.to_thread(elevenlabs_server.request_seen.wait, T)
        cancel.cancel()

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(cancel_when_asked())
            with pytest.raises(EngineCancelled):
                await collect(eng, cancel=cancel)  # T bounds it; the first-byte deadline is 2T
    finally:
        await eng.aclose()
    assert await asyncio.to_thread(elevenlabs_server.disconnected.wait, T)


async def test_bad_requests_fail_before_the_network(elevenlabs_server: ElevenLabsStandIn) -> None:
    eng = engine(elevenlabs_server)
    try:
        with pytest.raises(EngineError) as empty:
            await collect(eng, "   ")
        with pytest.raises(EngineError) as unknown:
            async for _ in eng.synthesize(SynthesisRequest(TEXT, "nobody"), CancelToken()):
                pass
        cancelled = CancelToken()
        cancelled.cancel()
        with pytest.raises(EngineCancelled):
            await collect(eng, cancel=cancelled)
    finally:
        await eng.aclose()
    assert empty.value.code == "empty_text"
    assert unknown.value.code == "unknown_voice"
    assert elevenlabs_server.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key": " "},
        {"base_url": "ftp://example.com"},
        {"output_rates": (48_000,)},
        {"first_byte_timeout": 0},
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"api_key": "k"} | kwargs
    with pytest.raises(ConfigError):
        ElevenLabsEngine(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("requested", "offered", "chosen"),
    [
        (24_000, (16_000, 22_050, 24_000), 24_000),
        (22_050, (16_000, 22_050, 24_000), 22_050),
        (8_000, (16_000, 22_050, 24_000), 16_000),
        (44_100, (16_000, 22_050, 24_000), 24_000),
        (44_100, (16_000, 24_000, 44_100), 44_100),
        (32_000, (16_000, 24_000, 44_100), 44_100),
    ],
)
def test_choose_pcm_rate(requested: int, offered: tuple[int, ...], chosen: int) -> None:
    assert choose_pcm_rate(requested, offered) == chosen
