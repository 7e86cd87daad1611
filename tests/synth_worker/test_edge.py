"""EdgeTTSEngine against the loopback stand-in that speaks the edge-tts websocket protocol."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from edge_tts.constants import SEC_MS_GEC_VERSION

from broker.audio import rms_dbfs
from broker.errors import ConfigError, EngineCancelled, EngineError, EngineTimeout, EngineUnavailable
from synth_worker.edge import EdgeTTSEngine
from synth_worker.engine import CancelToken, Engine, EngineChunk, SynthesisRequest
from tests.cloud.edge_server import EdgeStandIn
from tests.cloud.speech import speech
from tests.conftest import T

TEXT = "The quick brown fox jumps over the lazy dog."
SHORT = 0.3  # the deadlines under test; errors are asserted by type, never by elapsed time
ARIA = "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)"


def engine(server: EdgeStandIn, **kwargs: object) -> EdgeTTSEngine:
    settings: dict[str, object] = {"first_audio_timeout": T, "stall_timeout": T}
    settings.update(kwargs)
    return EdgeTTSEngine(server.endpoint, **settings)  # type: ignore[arg-type]


async def collect(
    eng: EdgeTTSEngine, text: str = TEXT, rate: int = 24_000, cancel: CancelToken | None = None
) -> list[EngineChunk]:
    async with asyncio.timeout(T):
        return [
            c async for c in eng.synthesize(SynthesisRequest(text, "maya", rate), cancel or CancelToken())
        ]


@pytest.mark.parametrize("rate", [24_000, 16_000, 48_000])
async def test_speaks_at_the_requested_rate(edge_server: EdgeStandIn, rate: int) -> None:
    eng = engine(edge_server)
    chunks = await collect(eng, rate=rate)
    assert isinstance(eng, Engine)
    assert {c.sample_rate for c in chunks} == {rate}
    step = rate * 40 // 1000
    assert all(len(c.samples) == step for c in chunks[:-1]) and 0 < len(chunks[-1].samples) <= step
    audio = np.concatenate([c.samples for c in chunks])
    assert audio.dtype == np.float32 and float(np.max(np.abs(audio))) < 1.0
    # MP3 adds encoder delay and pads the last frame: up to ~0.1 s more than the PCM it came from.
    expected_s = len(speech(TEXT, rate)) / rate
    assert expected_s - 0.02 < len(audio) / rate < expected_s + 0.15
    assert -26.0 < rms_dbfs(audio) < -16.0
    turn = edge_server.turns[-1]
    assert (turn.voice, turn.text) == (ARIA, TEXT)
    assert turn.prosody == {"pitch": "+0Hz", "rate": "+0%", "volume": "+0%"}
    assert turn.config["context"]["synthesis"]["audio"]["outputFormat"] == "audio-24khz-48kbitrate-mono-mp3"  # type: ignore[index]
    assert turn.query["Sec-MS-GEC-Version"] == SEC_MS_GEC_VERSION and len(turn.query["Sec-MS-GEC"]) >= 32
    assert turn.headers["Origin"] == "chrome-extension://jdiccldimpdaibmpdkjnbmckianbfold"
    assert turn.headers["Cookie"].startswith("muid=")


async def test_markup_in_text_is_escaped_and_prosody_sent(edge_server: EdgeStandIn) -> None:
    eng = engine(edge_server, rate="+10%", pitch="-5Hz")
    text = 'Tom & Jerry say "<hi>" at 3 > 2.'
    assert await collect(eng, text)
    turn = edge_server.turns[-1]
    assert turn.text == text
    assert turn.prosody["rate"] == "+10%" and turn.prosody["pitch"] == "-5Hz"


@pytest.mark.parametrize(
    ("mode", "deadlines", "error", "code", "handshakes"),
    [
        ("401", {}, EngineUnavailable, "auth_failed", 1),
        ("403", {}, EngineUnavailable, "auth_failed", 2),  # edge-tts' clock-skew retry, once
        ("500", {}, EngineError, "upstream_error", 1),
        ("silence", {"first_audio_timeout": SHORT}, EngineTimeout, "first_audio_timeout", 1),
        ("stall", {"stall_timeout": SHORT}, EngineTimeout, "stall", 1),
        ("die", {}, EngineError, "stream_broken", 1),
    ],
)
async def test_failures_are_typed(  # noqa: PLR0917
    edge_server: EdgeStandIn,
    mode: str,
    deadlines: dict[str, float],
    error: type[EngineError],
    code: str,
    handshakes: int,
) -> None:
    edge_server.mode = mode  # type: ignore[assignment]
    with pytest.raises(EngineError) as caught:
        await collect(engine(edge_server, **deadlines))  # bounded by T; the deadline under test is SHORT
    assert type(caught.value) is error
    assert caught.value.code == code
    assert edge_server.handshakes == handshakes


async def test_refused_port_is_unavailable(refused_port: int) -> None:
    eng = EdgeTTSEngine(f"ws://127.0.0.1:{refused_port}/consumer/speech/synthesize/readaloud/edge/v1")
    with pytest.raises(EngineUnavailable) as caught:
        await collect(eng)
    assert caught.value.code == "unreachable"


async def test_unanswered_connect_costs_only_the_connect_timeout(blackhole_port: int) -> None:
    eng = EdgeTTSEngine(
        f"ws://127.0.0.1:{blackhole_port}/edge/v1", connect_timeout=SHORT, first_audio_timeout=T
    )
    with pytest.raises(EngineUnavailable) as caught:
        await collect(eng)  # bounded by T
    assert caught.value.code == "connect_timeout"


async def test_cancel_mid_stream_stops_and_hangs_up(edge_server: EdgeStandIn) -> None:
    edge_server.mode = "stall"  # some audio, then the connection stays open
    eng = engine(edge_server, stall_timeout=T * 2)
    cancel = CancelToken()
    got = 0
    with pytest.raises(EngineCancelled):
        async with asyncio.timeout(T):
            async for _ in eng.synthesize(SynthesisRequest(TEXT, "maya"), cancel):
                got += 1
                cancel.cancel()
    assert got == 1
    assert await asyncio.to_thread(edge_server.disconnected.wait, T)


async def test_cancel_while_the_server_is_silent(edge_server: EdgeStandIn) -> None:
    edge_server.mode = "silence"
    eng = engine(edge_server, first_audio_timeout=T * 2)
    cancel = CancelToken()

    async def cancel_when_asked() -> None:
        assert await asyncio.to_thread(edge_server.request_seen.wait, T)
        cancel.cancel()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(cancel_when_asked())
        with pytest.raises(EngineCancelled):
            await collect(eng, cancel=cancel)  # T bounds it; the first-audio deadline is 2T
    assert await asyncio.to_thread(edge_server.disconnected.wait, T)


async def test_bad_requests_fail_before_the_network(edge_server: EdgeStandIn) -> None:
    eng = engine(edge_server)
    with pytest.raises(EngineError) as empty:
        await collect(eng, " \x0b ")
    with pytest.raises(EngineError) as unknown:
        async for _ in eng.synthesize(SynthesisRequest(TEXT, "nobody"), CancelToken()):
            pass
    assert empty.value.code == "empty_text"
    assert unknown.value.code == "unknown_voice"
    assert edge_server.handshakes == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint": "https://speech.example.com/edge/v1"},
        {"endpoint": "ws://"},
        {"rate": "fast"},
        {"stall_timeout": -1},
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        EdgeTTSEngine(**kwargs)  # type: ignore[arg-type]


def test_default_endpoint_is_the_edge_service() -> None:
    eng = EdgeTTSEngine()
    assert eng.endpoint.startswith(
        "wss://speech.platform.bing.com/consumer/speech/synthesize/readaloud/edge/v1?"
    )
