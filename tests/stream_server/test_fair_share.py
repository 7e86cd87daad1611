"""Fair share in the real Hub (in-memory MQTT link): dropped sessions cannot lock others out or keep
the engines busy, and one client's sentences cannot take every engine from another's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from broker import topics
from broker.audio import AudioFrame, Encoding
from broker.errors import Overloaded
from broker.messages import Cancel, Job, JobAck, JobDone, worker_messages
from broker.ws_protocol import Speak, TurnEnd
from stream_server.core.resume import ResumeRequest
from stream_server.hub.hub import Hub
from stream_server.hub.live_sessions import CloseReason
from synth_worker.voices import VoiceMap
from tests.conftest import T
from tests.stream_server.test_hub import GW, Clock, config, frame, heartbeat, jobs_of
from tests.support.memlink import MemoryLink

THREE = "One is here now. Two is here now. Three is here now. Four is here now."


@contextlib.asynccontextmanager
async def hub(**settings: object) -> AsyncIterator[tuple[Hub, MemoryLink]]:
    cfg = replace(config(), lookahead=3, **settings)  # type: ignore[arg-type]
    mqtt = MemoryLink(GW)
    async with Hub(cfg, VoiceMap.load(None, "maya"), {}, clock=Clock(), link=mqtt) as h:
        await mqtt.deliver(topics.worker_heartbeat("w1"), heartbeat())
        yield h, mqtt


def cancelled(mqtt: MemoryLink) -> set[str]:
    out: set[str] = set()
    for p in mqtt.published:
        if p.topic == topics.CANCEL:
            msg = worker_messages.decode(p.payload)
            assert isinstance(msg, Cancel)
            out.update(msg.job_ids)
    return out


def jobs_for(mqtt: MemoryLink, session_id: str) -> list[Job]:
    return [j for j in jobs_of(mqtt) if j.session_id == session_id]


async def test_after_a_flood_of_dropped_sessions_a_new_client_is_admitted_at_once() -> None:
    async with hub(max_sessions=5, max_detached=5, client_max_sessions=100) as (h, _):
        dropped = [h.open_session(resumable=True, client="addr:attacker") for _ in range(5)]
        for link in dropped:
            h.detached.detach(link, link.attachment)
        assert all(link.detached and not link.closed for link in dropped)
        polite = h.open_session(resumable=True, client="addr:polite")
        assert not polite.closed
        assert dropped[0].closed and dropped[0].close_reason is CloseReason.DETACHED_EVICTED
        assert not dropped[1].closed


async def test_a_full_gateway_refuses_with_overloaded_and_retry_after() -> None:
    async with hub(max_sessions=2, client_max_sessions=100, retry_after_s=3.0) as (h, _):
        h.open_session(client="addr:a")
        h.open_session(client="addr:b")
        with pytest.raises(Overloaded) as refused:
            h.open_session(client="addr:c")
        assert refused.value.code == "overloaded" and refused.value.retry_after_s == 3.0


async def test_a_client_beyond_its_session_quota_is_refused_others_are_not() -> None:
    async with hub(client_max_sessions=2) as (h, _):
        h.open_session(client="addr:greedy")
        h.open_session(client="addr:greedy")
        with pytest.raises(Overloaded):
            h.open_session(client="addr:greedy")
        assert not h.open_session(client="addr:polite").closed


async def test_a_detached_session_makes_no_audio_beyond_the_sentence_in_flight() -> None:
    async with hub(client_max_in_flight=8) as (h, mqtt):
        link = h.open_session(resumable=True, client="addr:x")
        h.receive(link, Speak(THREE))
        await mqtt.wait_until(lambda: len(jobs_for(mqtt, link.session_id)) == 1, T)
        (first,) = jobs_for(mqtt, link.session_id)
        # The first sentence's audio is being made: it goes on; the lookahead's jobs (sent at its
        # first audio) are stopped.
        await mqtt.deliver(
            topics.job_events(first.reply_to, first.job_id), JobAck(first.job_id, "w1").to_bytes()
        )
        await mqtt.deliver(topics.job_audio(first.reply_to, first.job_id), frame(0, 0))
        await mqtt.wait_until(lambda: len(jobs_for(mqtt, link.session_id)) == 3, T)
        jobs = jobs_for(mqtt, link.session_id)
        token = h.detached.issue(link)  # the resume token of the session's ready
        h.detached.detach(link, link.attachment)
        later = {j.job_id for j in jobs if j.seq > 0}
        await mqtt.wait_until(lambda: later <= cancelled(mqtt), T)
        assert jobs[0].job_id not in cancelled(mqtt)
        # A resume sends them again.
        assert h.detached.resume(ResumeRequest(link.session_id, 0, token), "10.0.0.1") is link
        await mqtt.wait_until(lambda: len(jobs_for(mqtt, link.session_id)) == 5, T)
        assert [j.seq for j in jobs_for(mqtt, link.session_id)[3:]] == [1, 2]


async def test_one_clients_sentences_in_flight_are_capped_and_others_go_at_once() -> None:
    async with hub(client_max_in_flight=2, client_max_sessions=10) as (h, mqtt):
        greedy = [h.open_session(client="addr:greedy") for _ in range(3)]
        for link in greedy:
            h.receive(link, Speak(THREE))
        polite = h.open_session(client="addr:polite")
        h.receive(polite, Speak("Hello there, polite one."))
        await mqtt.wait_until(lambda: len(jobs_for(mqtt, polite.session_id)) == 1, T)
        assert sum(len(jobs_for(mqtt, link.session_id)) for link in greedy) == 2
        # Closing a greedy session gives its share to the client's other sessions.
        h.close_session(greedy[0])
        await mqtt.wait_until(
            lambda: sum(len(jobs_for(mqtt, link.session_id)) for link in greedy[1:]) == 2, T
        )


async def test_an_mp3_session_is_encoded_off_the_loop_and_stays_in_order() -> None:
    async with hub() as (h, mqtt):
        link = h.open_session(fmt="mp3", client="addr:x")
        h.receive(link, Speak("First one is here. Second one is here."))
        for n in (1, 2):  # the second sentence goes at the first one's first audio
            await mqtt.wait_until(lambda n=n: len(jobs_for(mqtt, link.session_id)) == n, T)
            job = jobs_for(mqtt, link.session_id)[-1]
            audio, events = (
                topics.job_audio(job.reply_to, job.job_id),
                topics.job_events(job.reply_to, job.job_id),
            )
            await mqtt.deliver(events, JobAck(job.job_id, "w1").to_bytes())
            await mqtt.deliver(audio, frame(job.seq, 0, samples=24_000))
            await mqtt.deliver(events, JobDone(job.job_id, "w1", 1, 24_000, 24_000, "bark").to_bytes())
        items: list[object] = []
        async with asyncio.timeout(T):
            while not isinstance(items[-1] if items else None, TurnEnd):
                items.append(await link.out.get())
    kinds = [type(i).__name__ if not isinstance(i, bytes) else "audio" for i in items]
    assert kinds == [
        "SentenceStart",
        "audio",
        "SentenceEnd",
        "SentenceStart",
        "audio",
        "SentenceEnd",
        "TurnEnd",
    ]
    frames = [AudioFrame.from_bytes(i) for i in items if isinstance(i, bytes)]
    assert [f.seq for f in frames] == [0, 1]
    assert all(f.encoding is Encoding.MP3 and len(f.payload) > 500 for f in frames)
