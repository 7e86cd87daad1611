"""VoiceClient against the real gateway process (espeak-ng tier, so no model is needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from broker.audio import rms_dbfs
from broker.launcher import Mosquitto
from clients.voice_client import (
    AudioChunk,
    Connected,
    ConnectionLost,
    SentenceAudio,
    SentenceFailed,
    SentenceStarted,
    TurnCancelled,
    TurnEnded,
    VoiceClient,
    consume,
)
from tests.conftest import Service, T

THREE = "The sun rose over the hills. Birds began to sing! Was it morning already?"


@pytest.fixture(scope="module")
def espeak_gateway() -> Iterator[Service]:
    with Mosquitto() as broker:
        svc = Service(broker, None, {"SESAME_TIERS": "espeak-ng", "SESAME_CACHE_ENABLED": "false"})
        try:
            yield svc
        finally:
            svc.close()


async def tokens(text: str, size: int = 3) -> AsyncIterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


async def test_streamed_tokens_come_back_as_sentences_in_order_with_audio_and_engine(
    espeak_gateway: Service,
) -> None:
    async with VoiceClient(espeak_gateway.ws_url) as voice:
        await voice.stream(tokens(THREE))
        async with asyncio.timeout(8 * T):
            events = await voice.turn()
    assert isinstance(events[0], Connected) and events[0].sample_rate == 24000
    sentences = [e for e in events if isinstance(e, SentenceAudio)]
    assert [s.text for s in sentences] == [
        "The sun rose over the hills.",
        "Birds began to sing!",
        "Was it morning already?",
    ]
    assert [s.seq for s in sentences] == [0, 1, 2]
    assert all(s.engine == "espeak-ng" for s in sentences)
    for s in sentences:
        assert s.samples == len(s.audio) // 2 > 0
        assert rms_dbfs(s.pcm()) > -50
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert sum(len(c.payload) for c in chunks) == sum(len(s.audio) for s in sentences)
    # each sentence's start comes before its audio, and its audio before the whole sentence
    kinds = [type(e).__name__ for e in events if not isinstance(e, AudioChunk)]
    assert kinds[-1] == "TurnEnded"
    assert kinds.count("SentenceStarted") == 3


async def test_cancel_is_barge_in_and_the_session_goes_on(espeak_gateway: Service) -> None:
    long_text = " ".join(f"This is sentence number {i}." for i in range(20))
    async with VoiceClient(espeak_gateway.ws_url) as voice:
        await voice.speak(long_text)
        async with asyncio.timeout(8 * T):
            async for event in voice.events():
                if isinstance(event, SentenceStarted):
                    break
            await voice.cancel()
            events = await voice.turn()
            assert isinstance(events[-1], TurnCancelled)
            await voice.speak("Still here.")
            after = await voice.turn()
    spoken = [e for e in after if isinstance(e, SentenceAudio)]
    assert [s.text for s in spoken] == ["Still here."]
    assert isinstance(after[-1], TurnEnded)


async def test_bad_voice_is_a_typed_error_event(espeak_gateway: Service) -> None:
    async with VoiceClient(espeak_gateway.ws_url, voice="nobody") as voice:
        async with asyncio.timeout(4 * T):
            async for event in voice.events():
                if isinstance(event, SentenceFailed):
                    break
    assert event.code == "unknown_voice" and "maya" in event.message


async def test_no_gateway_is_connection_lost() -> None:
    from broker.launcher import free_port

    with pytest.raises(ConnectionLost):
        async with VoiceClient(f"ws://127.0.0.1:{free_port()}/ws"):
            pass


@pytest.mark.parametrize(
    ("unheard", "sentence", "left"),
    [
        ("Hello there. How are", "Hello there.", " How are"),
        ("  Hello\n  there.  How", "Hello there.", "  How"),
        ("Other text. Hello.", "Hello.", "Other text. Hello."),  # not a prefix: keep it all
        ("Hel", "Hello.", "Hel"),
    ],
)
def test_consume_removes_a_heard_sentence_from_the_unheard_text(
    unheard: str, sentence: str, left: str
) -> None:
    assert consume(unheard, sentence) == left
