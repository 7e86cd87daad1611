"""A job the worker starts at once is acknowledged by its first audio frame; its ``ack`` goes only if
no audio is out within the hold; a job that waits in the queue is acknowledged at once, with its
place (issue 20). The real JobRunner, WorkerCore and espeak-ng engine; the link records what is
published, in order, and acknowledges every publish at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from broker import topics
from broker.audio import AudioFrame
from broker.messages import Job, JobAck, JobDone, JobError, Message, decode_worker_message
from synth_worker.core import WorkerCore
from synth_worker.engine import CancelToken, EngineChunk, SynthesisRequest
from synth_worker.espeak import EspeakEngine
from synth_worker.worker.jobs import JobRunner
from tests.conftest import T

REPLY = topics.reply_root("gw")


class Recorded:
    """An MQTT link stand-in: every publish recorded in order and acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[Message | AudioFrame] = []
        self.changed = asyncio.Event()

    def publish_now(self, topic: str, payload: bytes | str, *, qos: int = 1, **_: object) -> Awaitable[None]:
        assert isinstance(payload, bytes) and topic.endswith("/audio")
        self._record(AudioFrame.from_bytes(payload))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def publish(self, topic: str, payload: bytes | str, **_: object) -> None:
        assert isinstance(payload, bytes) and topic.endswith("/events")
        self._record(decode_worker_message(payload))

    def _record(self, item: Message | AudioFrame) -> None:
        self.sent.append(item)
        self.changed.set()

    def of(self, job_id: str) -> list[str]:
        """What went out for ``job_id``, in order: "ack", "audio", "done", "error"."""
        names = {JobAck: "ack", JobDone: "done", JobError: "error"}

        def of_job(item: Message | AudioFrame) -> bool:
            return (
                item.seq == SEQ[job_id]
                if isinstance(item, AudioFrame)
                else getattr(item, "job_id", None) == job_id
            )

        return [
            "audio" if isinstance(item, AudioFrame) else names[type(item)]
            for item in self.sent
            if of_job(item)
        ]

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5 * T):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


class Gated:
    """The real espeak-ng engine, its first audio held until the test opens the gate."""

    def __init__(self) -> None:
        self.inner = EspeakEngine()
        self.gate = asyncio.Event()
        self.name = self.inner.name

    def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        async def held() -> AsyncIterator[EngineChunk]:
            await self.gate.wait()
            async for chunk in self.inner.synthesize(request, cancel):
                yield chunk

        return held()


SEQ = {"j1": 1, "j2": 2}


def job(job_id: str, voice: str = "maya") -> Job:
    return Job(job_id, "s1", SEQ[job_id], "Hello there.", voice, REPLY)


def runner(link: Recorded, engine: object, ack_hold_s: float) -> JobRunner:
    core = WorkerCore("w1", engine="espeak-ng", model="espeak-ng", pid=1, interval_s=0.5)
    core.ready(time.monotonic())

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=name)

    return JobRunner(
        core, engine, link,  # type: ignore[arg-type]
        clock=time.monotonic, spawn=spawn, changed=lambda: None, ack_hold_s=ack_hold_s,
    )  # fmt: skip


async def test_a_job_started_at_once_is_acknowledged_by_its_first_audio() -> None:
    link = Recorded()
    jobs = runner(link, EspeakEngine(), ack_hold_s=10 * T)  # the audio comes long before the hold ends
    await jobs.receive_job(job("j1").to_bytes())
    await asyncio.wait_for(jobs.tasks["j1"], 5 * T)
    sent = link.of("j1")
    assert "ack" not in sent  # an ack went out before every job's engine started
    assert sent[0] == "audio" and sent[-1] == "done" and set(sent[1:-1]) == {"audio"}


async def test_a_job_with_no_audio_by_the_end_of_the_hold_is_acknowledged_then() -> None:
    link = Recorded()
    engine = Gated()
    jobs = runner(link, engine, ack_hold_s=0.01 * T)
    await jobs.receive_job(job("j1").to_bytes())
    assert link.of("j1") == []  # held
    await link.until(lambda: link.of("j1") == ["ack"])  # the hold ended with no audio out
    (ack,) = link.sent
    assert isinstance(ack, JobAck) and ack.queue_position == 0 and ack.worker_id == "w1"
    engine.gate.set()
    await asyncio.wait_for(jobs.tasks["j1"], 5 * T)
    sent = link.of("j1")
    assert sent[:2] == ["ack", "audio"] and sent[-1] == "done" and sent.count("ack") == 1


async def test_a_queued_job_is_acknowledged_at_once_with_its_place() -> None:
    link = Recorded()
    engine = Gated()
    jobs = runner(link, engine, ack_hold_s=10 * T)
    await jobs.receive_job(job("j1").to_bytes())  # starts, held at its first audio
    await jobs.receive_job(job("j2").to_bytes())  # waits behind it
    assert link.of("j1") == [] and link.of("j2") == ["ack"]
    queued = link.sent[0]
    assert isinstance(queued, JobAck) and queued.job_id == "j2" and queued.queue_position == 1
    engine.gate.set()
    await asyncio.wait_for(jobs.tasks["j1"], 5 * T)
    await link.until(lambda: "done" in link.of("j2"))
    assert "ack" not in link.of("j1") and link.of("j2").count("ack") == 1  # not acknowledged twice


async def test_a_job_that_fails_before_any_audio_sends_its_error_and_no_ack() -> None:
    link = Recorded()
    jobs = runner(link, EspeakEngine(), ack_hold_s=0.01 * T)
    await jobs.receive_job(job("j1", voice="no-such-voice").to_bytes())
    assert "j1" in jobs.held_acks  # started at once (the engine finds out about the voice), ack held
    await asyncio.wait_for(jobs.tasks["j1"], 5 * T)
    assert link.of("j1") == ["error"]
    assert "j1" not in jobs.held_acks  # its timer went with the job: no ack after the error
