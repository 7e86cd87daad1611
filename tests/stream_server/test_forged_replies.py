"""Replies are authenticated by topic and assignment (docs/security.md), on the real Hub in-process.

The attack this closes: a process holding worker credentials (or, before, none at all) answered
jobs it was never sent, with a tone that the gateway spoke and cached for other sessions. Now a
reply topic names the worker (the broker lets a worker write only under its own id), and the
gateway takes a reply only from the worker it sent the job to.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import structlog

from broker import topics
from broker.messages import JobAck, JobDone
from broker.ws_protocol import SentenceStart, Speak
from stream_server.hub.hub import Hub
from synth_worker.voices import VoiceMap
from tests.stream_server.test_hub import GW, Clock, config, drain, first_job, frame, heartbeat
from tests.support.memlink import MemoryLink


@contextlib.asynccontextmanager
async def hub_with_cache() -> AsyncIterator[tuple[Hub, MemoryLink]]:
    link = MemoryLink(GW)
    async with Hub(
        replace(config(), cache_enabled=True), VoiceMap.load(None, "maya"), {}, clock=Clock(), link=link
    ) as h:
        await link.deliver(topics.worker_heartbeat("w1"), heartbeat("w1"))
        yield h, link


def wrong_worker_count(h: Hub) -> float:
    value = h.metrics.registry.get_sample_value(
        "sesame_bad_input_total", {"path": "mqtt", "code": "wrong_worker"}
    )
    return value or 0.0


async def test_a_reply_from_another_worker_is_dropped_counted_logged_once_and_never_cached() -> None:
    async with hub_with_cache() as (h, mqtt):
        await mqtt.deliver(topics.worker_heartbeat("w2"), heartbeat("w2"))  # the forger is a worker too
        link = h.open_session()
        h.receive(link, Speak("Only my worker speaks."))
        job = await first_job(mqtt)
        assert job.reply_to == topics.reply_to(GW, job.reply_to.rsplit("/", 1)[1])
        owner = job.reply_to.rsplit("/", 1)[1]
        forger = "w2" if owner == "w1" else "w1"
        forged = topics.reply_to(GW, forger)
        with structlog.testing.capture_logs() as logs:
            for _ in range(2):
                await mqtt.deliver(
                    topics.job_events(forged, job.job_id), JobAck(job.job_id, forger).to_bytes()
                )
                await mqtt.deliver(topics.job_audio(forged, job.job_id), frame(job.seq, 0))
                await mqtt.deliver(
                    topics.job_events(forged, job.job_id),
                    JobDone(job.job_id, forger, 1, 960, 24_000, "bark").to_bytes(),
                )
        assert [e for e in drain(link) if isinstance(e, bytes | SentenceStart)] == []  # not one frame
        assert wrong_worker_count(h) == 6
        assert [e["worker_id"] for e in logs if e["event"] == "reply_from_wrong_worker"] == [forger]
        assert h.cache is not None and len(h.cache) == 0
        # The assigned worker's own reply is taken, and only its audio is cached.
        await mqtt.deliver(topics.job_events(job.reply_to, job.job_id), JobAck(job.job_id, owner).to_bytes())
        await mqtt.deliver(topics.job_audio(job.reply_to, job.job_id), frame(job.seq, 0, samples=480))
        await mqtt.deliver(
            topics.job_events(job.reply_to, job.job_id),
            JobDone(job.job_id, owner, 1, 480, 24_000, "bark").to_bytes(),
        )
        frames = [e for e in drain(link) if isinstance(e, bytes)]
        assert len(frames) == 1
        assert len(h.cache) == 1 and h.cache.bytes == 960  # 480 samples of pcm16: the owner's


async def test_job_ids_are_unguessable() -> None:
    async with hub_with_cache() as (h, mqtt):
        link = h.open_session()
        h.receive(link, Speak("One. Two. Three."))
        await mqtt.wait_for(lambda p: p.topic.endswith("/jobs"), 5.0)
        first = (await first_job(mqtt)).job_id
        assert first.startswith(f"{GW}.")
        token = first.removeprefix(f"{GW}.")
        assert len(token) >= 22 and not token.isdigit()  # 128 random bits, not a counter


async def test_a_role_user_cannot_pose_as_a_worker() -> None:
    """mosquitto's %u patterns apply to every user: ``llm`` may write workers/llm/heartbeat. The
    gateway takes no worker whose id is a role name, so it never sends such a "worker" a job."""
    async with hub_with_cache() as (h, mqtt):
        for role in ("llm", "listener", "monitor", "gateway", "device"):
            await mqtt.deliver(topics.worker_heartbeat(role), heartbeat(role))
        assert set(h.scheduler.registry.workers) == {"w1"}
        assert (
            h.metrics.registry.get_sample_value(
                "sesame_bad_input_total", {"path": "mqtt", "code": "role_not_worker"}
            )
            == 5
        )
