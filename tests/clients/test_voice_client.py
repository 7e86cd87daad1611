"""VoiceClient against the real gateway process (espeak-ng tier, so no model is needed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.audio import rms_dbfs
from broker.launcher import Mosquitto
from clients.reconnect import Backoff, consume
from clients.voice_client import VoiceClient
from clients.voice_events import (
    AudioChunk,
    Connected,
    ConnectionLost,
    Event,
    Reconnecting,
    SentenceAudio,
    SentenceFailed,
    SentenceStarted,
    TurnCancelled,
    TurnEnded,
)
from tests.conftest import Service, T
from tests.support.localstack import REPO, Proc

THREE = "The sun rose over the hills. Birds began to sing! Was it morning already?"


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


# ---- reconnect and resume ----------------------------------------------------------------------


class CuttableProxy:
    """A TCP relay on loopback whose connections the test can cut (the client sees a dropped socket)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst), name="proxy-pump")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()  # RST: no close frame, like a dropped network
        self._writers.clear()


def sentences(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, SentenceAudio)]


LONG = [f"This is sentence number {i}." for i in range(10)]


@pytest.mark.parametrize("sample_rate", [24_000, 16_000])
async def test_a_dropped_socket_resumes_the_session_with_no_frame_lost_or_repeated(
    espeak_gateway: Service, sample_rate: int
) -> None:
    """The resume needs the session's token (docs/security.md); at 16 kHz the client sends a
    ``start``, whose ``ready`` brings a new token that voids the first: the client resumes with it."""
    events: list[Event] = []
    cut = False
    async with CuttableProxy(espeak_gateway.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/ws"
        async with VoiceClient(
            url, sample_rate=sample_rate, backoff=Backoff(first_s=0.05, attempts=20)
        ) as voice:
            await voice.speak(" ".join(LONG))
            async with asyncio.timeout(12 * T):
                async for event in voice.events():
                    events.append(event)
                    if isinstance(event, AudioChunk) and len(sentences(events)) == 2 and not cut:
                        cut = True
                        proxy.cut()  # in the middle of the third sentence
                    if isinstance(event, TurnEnded):
                        break
    assert sentences(events) == LONG
    connected = [e for e in events if isinstance(e, Connected)]
    assert len(connected) == 2 and connected[1].resumed
    assert connected[1].session_id == connected[0].session_id
    assert any(isinstance(e, Reconnecting) for e in events)
    # every audio frame of every sentence exactly once, in order
    chunks: dict[int, list[int]] = {}
    for e in events:
        if isinstance(e, AudioChunk):
            chunks.setdefault(e.seq, []).append(e.index)
    assert sorted(chunks) == list(range(len(LONG)))
    for indexes in chunks.values():
        assert indexes == list(range(len(indexes)))
    for s in (e for e in events if isinstance(e, SentenceAudio)):
        assert len(s.audio) // 2 == s.samples


async def test_close_1012_from_a_restarting_gateway_goes_on_in_a_new_session(tmp_path: object) -> None:
    # The turn stays open (no flush) across the restart, so the old gateway's drain (which lets
    # turns in flight finish) ends by its timeout: keep that short.
    env = {"SESAME_TIERS": "espeak-ng", "SESAME_CACHE_ENABLED": "false", "SESAME_DRAIN_TIMEOUT_MS": "1000"}
    first_part = " ".join(LONG[:4]) + " And the last one"
    events: list[Event] = []
    with Mosquitto() as broker:
        svc = Service(broker, None, env)
        try:
            async with VoiceClient(svc.ws_url, backoff=Backoff(first_s=0.1, attempts=30)) as voice:
                await voice.send_text(first_part)
                async with asyncio.timeout(16 * T):
                    async for event in voice.events():
                        events.append(event)
                        if isinstance(event, SentenceAudio) and len(sentences(events)) == 2:
                            svc.gateway.signal(signal.SIGTERM)  # uvicorn closes websockets with 1012
                            svc.gateway.proc.wait(4 * T)
                            svc.gateway = Proc(["gateway"], {**svc.own_gateway_env, **env}, "gateway-2")
                            await asyncio.to_thread(svc.gateway.wait_event, "gateway_listening", 6 * T)
                        if isinstance(event, Connected) and len(events) > 1:
                            await voice.send_text(" is here.")
                            await voice.flush()
                        if isinstance(event, TurnEnded):
                            break
        finally:
            svc.close()
    assert sentences(events) == [*LONG[:4], "And the last one is here."]
    codes = [e.close_code for e in events if isinstance(e, Reconnecting)]
    assert codes and codes[0] == 1012
    connected = [e for e in events if isinstance(e, Connected)]
    assert len(connected) == 2 and not connected[1].resumed
    assert connected[1].session_id != connected[0].session_id


def test_the_documented_example_runs(espeak_gateway: Service, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "docs" / "examples" / "voice_client_example.py"),
            espeak_gateway.ws_url,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=12 * T,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and "espeak-ng" in lines[0] and "Hello, I'm Maya." in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"sentence-{i}.wav" for i in range(3)]


async def test_a_bark_preset_is_a_voice_for_the_session(espeak_gateway: Service) -> None:
    async with VoiceClient(espeak_gateway.ws_url, voice="v2/de_speaker_3") as voice:
        await voice.speak("Guten Tag.")
        async with asyncio.timeout(8 * T):
            events = await voice.turn()
    spoken = [e for e in events if isinstance(e, SentenceAudio)]
    assert [s.text for s in spoken] == ["Guten Tag."] and spoken[0].samples > 0
