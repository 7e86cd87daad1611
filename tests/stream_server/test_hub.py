"""The gateway's adapter in-process: the real Hub with an in-memory MQTT link and a settable clock.

These reach the paths no end-to-end test can steer: a client that does not read, a broker backlog,
a cancel re-sent after a reconnect, text for a session that does not exist, audio after ``done``,
and deadlines: a timeout fires at its deadline, not on a polling tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from broker import topics
from broker.audio import AudioFrame
from broker.messages import Cancel, Heartbeat, Job, JobAck, JobDone, JobError, worker_messages
from broker.ws_protocol import CancelTurn, Error, SentenceEnd, Speak, TurnEnd
from stream_server.config import GatewayConfig
from stream_server.core.failover import FailoverConfig
from stream_server.core.resume import ResumeRequest
from stream_server.hub.hub import Hub
from stream_server.hub.live_sessions import CloseReason, SessionLink
from stream_server.mqtt.outbound import Publish
from stream_server.mqtt.topic_sessions import CLAIM_WINDOW_S
from synth_worker.voices import VoiceMap
from tests.conftest import T
from tests.support.memlink import MemoryLink

GW = "gw-test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(**failover: object) -> GatewayConfig:
    base = GatewayConfig.from_env({"SESAME_GATEWAY_ID": GW, "SESAME_TIERS": "workers"})
    fo = replace(FailoverConfig(tiers=("workers",), max_retries=0), **failover)  # type: ignore[arg-type]
    return replace(base, failover=fo, cache_enabled=False, publish_session_events=False, preload_phrases=())


def heartbeat(worker_id: str = "w1", interval_s: float = 60.0) -> bytes:
    return Heartbeat(worker_id, 1, "ready", "bark", "m", 1, 0.0, interval_s).to_bytes()


def frame(seq: int, index: int, samples: int = 960) -> bytes:
    return AudioFrame(seq, index, 24_000, b"\x01\x00" * samples).to_bytes()


def jobs_of(link: MemoryLink) -> list[Job]:
    out = []
    for p in link.published:
        if p.topic.endswith("/jobs"):
            job = worker_messages.decode(p.payload)
            assert isinstance(job, Job)
            out.append(job)
    return out


def drain(link: SessionLink) -> list[object]:
    items: list[object] = []
    while not link.out.empty():
        items.append(link.out.get_nowait())
    return items


@contextlib.asynccontextmanager
async def running_hub() -> AsyncIterator[tuple[Hub, MemoryLink, Clock]]:
    """A running hub with one ready worker (in the test's own task: its TaskGroup lives there)."""
    clock = Clock()
    link = MemoryLink(GW)
    async with Hub(config(), VoiceMap.load(None, "maya"), {}, clock=clock, link=link) as h:
        await link.deliver(topics.worker_heartbeat("w1"), heartbeat())
        yield h, link, clock


async def first_job(link: MemoryLink) -> Job:
    await link.wait_for(lambda p: p.topic.endswith("/jobs"), T)
    return jobs_of(link)[0]


async def test_a_client_that_does_not_read_is_closed_with_client_too_slow() -> None:
    async with running_hub() as (h, mqtt, _):
        link = h.open_session()
        link.out = asyncio.Queue(3)
        h.receive(link, Speak("One sentence here."))
        job = await first_job(mqtt)
        audio = topics.job_audio(job.reply_to, job.job_id)
        for i in range(6):
            await mqtt.deliver(audio, frame(job.seq, i))
        assert link.closed and link.close_reason is CloseReason.CLIENT_TOO_SLOW
        assert drain(link)[-1] is None  # the writer sees the end and closes with client_too_slow
        assert h.metrics.registry.get_sample_value("sesame_dropped_total", {"what": "client_too_slow"}) == 1
        cancel = await mqtt.wait_for(lambda p: p.topic == topics.CANCEL, T)
        assert worker_messages.decode(cancel.payload) == Cancel(job_ids=(job.job_id,))
        assert h.sessions.get(link.session_id) is None


async def test_a_full_publish_queue_fails_the_job_over_with_broker_backlog() -> None:
    mqtt = MemoryLink(GW)
    h = Hub(config(max_retries=2), VoiceMap.load(None, "maya"), {}, clock=Clock(), link=mqtt)
    mqtt.hold.clear()  # the broker takes nothing: the control queue fills
    async with h:
        await mqtt.deliver(topics.worker_heartbeat("w1"), heartbeat())
        h.out.control = asyncio.Queue(1)  # full, and no publisher drains it
        h.out.control.put_nowait(Publish(topics.worker_jobs("w1"), b"{}", 1))
        link = h.open_session()
        h.receive(link, Speak("Nobody can carry this."))
        items = drain(link)
        errors = [i for i in items if isinstance(i, Error)]
        assert [e.code for e in errors] == ["speech_unavailable"]
        assert "broker_backlog" in errors[0].message and errors[0].text == "Nobody can carry this."
        assert isinstance(items[-1], TurnEnd)
        # First try plus two retries, each dropped and counted with the cancel of its attempt (kept
        # to be sent on reconnect); the worker is not blamed.
        assert h.metrics.registry.get_sample_value("sesame_dropped_total", {"what": "mqtt_publish"}) == 6
        assert len(h.out.unsent_cancels) == 3
        assert h.scheduler.registry.workers["w1"].cooldown_until == 0.0
        mqtt.hold.set()


async def test_a_cancel_that_could_not_be_published_is_sent_after_reconnecting() -> None:
    async with running_hub() as (h, mqtt, _):
        link = h.open_session()
        h.receive(link, Speak("Stop me."))
        job = await first_job(mqtt)
        mqtt.disconnect()
        h.receive(link, CancelTurn())
        assert h.out.unsent_cancels == set()
        # The publisher task tries, fails, and keeps the cancel for later.
        await mqtt.wait_until(lambda: bool(h.out.unsent_cancels), T)
        assert h.out.unsent_cancels == {job.job_id}
        await mqtt.reconnect()
        cancel = await mqtt.wait_for(lambda p: p.topic == topics.CANCEL, T)
        assert worker_messages.decode(cancel.payload) == Cancel(job_ids=(job.job_id,))
        assert h.out.unsent_cancels == set()


async def test_text_for_an_unknown_session_is_counted_and_changes_nothing() -> None:
    async with running_hub() as (h, mqtt, clock):
        live = h.open_session()
        await mqtt.deliver(topics.session_text("nosuchsession"), b'{"type":"text","text":"Hi.","flush":true}')

        def unknown() -> float | None:
            labels = {"path": "mqtt", "code": "unknown_session"}
            return h.metrics.registry.get_sample_value("sesame_bad_input_total", labels)

        # Another gateway's claim may still be on its way: it counts once the claim window passed.
        assert unknown() is None
        clock.now += CLAIM_WINDOW_S
        assert (deadline := h.next_deadline()) is not None and deadline <= clock.now
        h.handle_timer(clock.now)
        assert unknown() == 1
        assert jobs_of(mqtt) == [] and drain(live) == [] and len(h.sessions) == 1


async def test_session_text_over_mqtt_is_spoken_in_that_session() -> None:
    async with running_hub() as (h, mqtt, _):
        link = h.open_session()
        await mqtt.deliver(
            topics.session_text(link.session_id), b'{"type":"text","text":"Hello there.","flush":true}'
        )
        job = await first_job(mqtt)
        assert (job.session_id, job.text, job.sample_rate) == (link.session_id, "Hello there.", 24_000)


async def test_chunks_after_done_are_ignored_and_held_nowhere() -> None:
    async with running_hub() as (h, mqtt, _):
        link = h.open_session()
        h.receive(link, Speak("Short one."))
        job = await first_job(mqtt)
        audio, events = (
            topics.job_audio(job.reply_to, job.job_id),
            topics.job_events(job.reply_to, job.job_id),
        )
        await mqtt.deliver(events, JobAck(job.job_id, "w1").to_bytes())
        # done overtakes the last chunk: the sentence ends only once both chunks are here.
        await mqtt.deliver(audio, frame(job.seq, 0))
        await mqtt.deliver(events, JobDone(job.job_id, "w1", 2, 1920, 24_000, "bark").to_bytes())
        assert not any(isinstance(i, SentenceEnd) for i in drain(link))
        await mqtt.deliver(audio, frame(job.seq, 1))
        items = drain(link)
        assert [type(i) for i in items if not isinstance(i, bytes)] == [SentenceEnd, TurnEnd]
        assert len(h.jobs) == 0
        for i in range(2, 5):  # late: a duplicate delivery, or a worker that did not hear the cancel
            await mqtt.deliver(audio, frame(job.seq, i))
        await mqtt.deliver(events, JobDone(job.job_id, "w1", 5, 4800, 24_000, "bark").to_bytes())
        assert drain(link) == [] and len(h.jobs) == 0 and not h.scheduler.busy()


async def test_jobs_carry_mqtt_message_expiry_not_a_wall_clock() -> None:
    async with running_hub() as (h, mqtt, _):
        h.receive(h.open_session(), Speak("Expire me."))
        job = await first_job(mqtt)
        published = next(p for p in mqtt.published if p.topic.endswith("/jobs"))
        assert job.expires_at is None
        assert published.expiry_s == round(h.config.failover.timeout_s)


async def test_sentences_carry_the_session_rate_to_jobs() -> None:
    async with running_hub() as (h, mqtt, _):
        link = h.open_session(sample_rate=16_000)
        h.receive(link, Speak("At sixteen kilohertz."))
        job = await first_job(mqtt)
        assert job.sample_rate == 16_000


# ---- deadlines ---------------------------------------------------------------------------------


async def test_an_idle_gateway_has_no_deadline_but_the_health_sample() -> None:
    async with running_hub() as (h, _, clock):
        h.handle_timer(clock.now)  # the first health sample
        # Only the worker's heartbeat expiry (3 x its 60 s interval) and the next health sample.
        assert h.scheduler.next_deadline() == pytest.approx(
            clock.now + 60.0 * h.config.failover.missed_heartbeats
        )
        h.scheduler.registry.workers.clear()
        assert h.scheduler.next_deadline() is None
        assert h.next_deadline() == pytest.approx(clock.now + h.config.health_check_interval_s)


async def test_the_ack_timeout_fires_at_its_deadline_on_a_fake_clock() -> None:
    async with running_hub() as (h, mqtt, clock):
        link = h.open_session()
        h.receive(link, Speak("Anyone there?"))
        await first_job(mqtt)
        ack_s = h.config.failover.ack_timeout_s
        assert h.scheduler.next_deadline() == pytest.approx(clock.now + ack_s)
        clock.now += ack_s - 0.001
        h.handle_timer(clock.now)
        assert not any(isinstance(i, Error) for i in drain(link))
        clock.now += 0.001
        h.handle_timer(clock.now)
        errors = [i for i in drain(link) if isinstance(i, Error)]
        assert len(errors) == 1 and "ack_timeout" in errors[0].message


async def test_the_ack_timeout_fires_close_to_its_deadline_in_real_time() -> None:
    mqtt = MemoryLink(GW)
    async with Hub(config(ack_timeout_s=1.0), VoiceMap.load(None, "maya"), {}, link=mqtt) as h:
        await mqtt.deliver(topics.worker_heartbeat("w1"), heartbeat())
        link = h.open_session()
        h.receive(link, Speak("Nobody acks this."))
        sent = time.monotonic()
        await first_job(mqtt)
        async with asyncio.timeout(T):
            while not isinstance(item := await link.out.get(), Error):
                pass
        late = time.monotonic() - sent - 1.0
        assert "ack_timeout" in item.message
        # Generous: a loaded CI machine may be slow to run the loop, but never early, and nowhere
        # near a polling interval's worth of lateness on an idle loop.
        assert 0.0 <= late < 0.25 * T


async def test_a_detached_session_is_closed_when_its_grace_ends_on_the_deadline_task() -> None:
    async with running_hub() as (h, _, clock):
        link = h.open_session(resumable=True)
        h.detached.detach(link, link.attachment)
        grace = h.config.resume_grace_s
        assert h.detached.next_deadline() == pytest.approx(clock.now + grace)
        assert h.next_deadline() is not None and h.next_deadline() <= clock.now + grace  # type: ignore[operator]
        clock.now += grace - 0.001
        h.handle_timer(clock.now)
        assert not link.closed and h.sessions.get(link.session_id) is link
        clock.now += 0.001
        h.handle_timer(clock.now)
        assert link.closed and link.close_reason is CloseReason.RESUME_EXPIRED
        assert h.detached.next_deadline() is None


async def test_a_resumed_session_outlives_the_grace_of_its_old_socket() -> None:
    async with running_hub() as (h, _, clock):
        link = h.open_session(resumable=True)
        token = h.detached.issue(link)
        assert token is not None
        h.detached.detach(link, link.attachment)
        assert h.detached.resume(ResumeRequest(link.session_id, 0, token), "peer") is link
        assert h.detached.next_deadline() is None
        clock.now += h.config.resume_grace_s + 1.0
        h.handle_timer(clock.now)
        assert not link.closed and not link.detached


async def test_an_mqtt_only_session_closes_when_its_publisher_is_silent_for_the_idle_time() -> None:
    async with running_hub() as (h, mqtt, clock):
        await mqtt.deliver(topics.session_topic("mq1", "open"), b"")
        link = h.sessions.get("mq1")
        assert link is not None
        idle = h.config.mqtt_session_idle_s
        assert h.mqtt_sessions.idle.next_deadline() == pytest.approx(clock.now + idle)
        assert h.mqtt_sessions.next_deadline() <= clock.now + idle  # type: ignore[operator]
        clock.now += idle / 2
        await mqtt.deliver(topics.session_topic("mq1", "flush"), b"")  # the publisher speaks
        clock.now += idle / 2 + 0.001
        h.handle_timer(clock.now)
        assert not link.closed
        clock.now += idle / 2
        h.handle_timer(clock.now)
        assert link.closed and link.close_reason is CloseReason.MQTT_IDLE
        assert h.mqtt_sessions.idle.next_deadline() is None


async def test_a_full_worker_queue_is_busy_not_broken_no_cool_down() -> None:
    """A worker answering ``overloaded`` (its queue is full) is not cooled down: the next session's
    first sentence still goes to it (before, a cool-down sent every sentence of the following
    second to a fallback voice)."""
    async with running_hub() as (h, mqtt, _):
        first = h.open_session()
        h.receive(first, Speak("Turned away."))
        job = await first_job(mqtt)
        await mqtt.deliver(
            topics.job_events(job.reply_to, job.job_id),
            JobError(job.job_id, "w1", "overloaded", "full").to_bytes(),
        )
        assert h.scheduler.registry.workers["w1"].cooldown_until == 0.0
        second = h.open_session()
        h.receive(second, Speak("Still welcome."))
        await mqtt.wait_for(lambda _p: any(j.session_id == second.session_id for j in jobs_of(mqtt)), T)
        assert [j.text for j in jobs_of(mqtt) if j.session_id == second.session_id] == ["Still welcome."]


async def test_a_speaks_first_job_is_out_before_the_rest_of_its_text_is_cut() -> None:
    """Issue 20: the segmenter cuts the rest of a ``speak`` (its flush) only once the job of its
    first sentence is written, not before: that job leaves ~35 us sooner after an idle spell."""
    async with running_hub() as (h, mqtt, _):
        link = h.open_session()
        segmenter = link.core._segmenter
        jobs_when_cut: list[int] = []
        cut_rest = segmenter.flush

        def flush() -> list[str]:
            jobs_when_cut.append(len(jobs_of(mqtt)))
            return cut_rest()

        segmenter.flush = flush  # type: ignore[method-assign]
        h.receive(link, Speak("I found three restaurants near you, the closest one is Luigi's."))
        assert jobs_when_cut == [1]
        assert [job.text for job in jobs_of(mqtt)] == ["I found three restaurants near you,"]
        assert [s.sentence.text for s in link.core.sentences.values()] == [
            "I found three restaurants near you,",
            "the closest one is Luigi's.",
        ]
