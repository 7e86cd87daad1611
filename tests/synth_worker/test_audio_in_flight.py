"""The worker publishes a sentence's audio without waiting for each chunk's PUBACK (issue 20):
chunks go out back to back, at most ``AUDIO_IN_FLIGHT`` unacknowledged, and ``done`` only once all
are acknowledged. The real JobRunner, WorkerCore and espeak-ng engine; the link records each publish
when it is made and holds its acknowledgement until the test gives it."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from broker import topics
from broker.ack_window import AckWindow
from broker.audio import AudioFrame
from broker.errors import BrokerError
from broker.messages import Job, JobDone, JobError, decode_worker_message
from synth_worker.core import WorkerCore
from synth_worker.espeak import EspeakEngine
from synth_worker.worker.jobs import AUDIO_IN_FLIGHT, JobRunner
from tests.conftest import T

REPLY = topics.reply_root("gw")
# Long enough for well over AUDIO_IN_FLIGHT + 1 chunks of 40 ms.
TEXT = "This sentence is long enough to make many chunks of audio, one after another, all ready at once."


class HeldAcks:
    """An MQTT link stand-in: audio publishes recorded at once, their PUBACKs held."""

    def __init__(self) -> None:
        self.audio: list[tuple[bytes, asyncio.Future[None]]] = []
        self.replies: list[bytes] = []
        self.changed = asyncio.Event()
        self.acking = False  # acknowledge every publish at once from now on

    def ack_all(self) -> None:
        self.acking = True
        for _, ack in self.audio:
            if not ack.done():
                ack.set_result(None)

    def publish_now(self, topic: str, payload: bytes | str, *, qos: int = 1, **_: object) -> Awaitable[None]:
        assert isinstance(payload, bytes) and "/audio" in topic
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.acking:
            ack.set_result(None)
        self.audio.append((payload, ack))
        self.changed.set()
        return ack

    async def publish(self, topic: str, payload: bytes | str, **_: object) -> None:
        assert isinstance(payload, bytes)
        self.replies.append(payload)
        self.changed.set()

    def acked(self) -> int:
        return sum(ack.done() for _, ack in self.audio)

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5 * T):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def runner(link: HeldAcks) -> JobRunner:
    core = WorkerCore("w1", engine="espeak-ng", model="espeak-ng", pid=1, interval_s=0.5)
    core.ready(time.monotonic())

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=name)

    return JobRunner(core, EspeakEngine(), link, clock=time.monotonic, spawn=spawn, changed=lambda: None)  # type: ignore[arg-type]


def job() -> Job:
    return Job(job_id="j1", session_id="s1", seq=3, text=TEXT, voice="maya", reply_to=REPLY)


def ends(link: HeldAcks) -> list[object]:
    return [m for m in map(decode_worker_message, link.replies) if isinstance(m, (JobDone, JobError))]


async def test_chunks_go_out_ahead_of_their_acks_and_done_waits_for_all() -> None:
    link = HeldAcks()
    jobs = runner(link)
    await jobs.receive_job(job().to_bytes())
    await link.until(lambda: len(link.audio) >= 1)
    assert len(link.audio) == 1  # the first chunk's PUBACK is awaited (its stamp: first published)
    link.audio[0][1].set_result(None)
    # Then the chunks go out back to back, none acknowledged, until one more than the window waits.
    unacked = AUDIO_IN_FLIGHT + 1
    await link.until(lambda: len(link.audio) == 1 + unacked)
    assert link.acked() == 1
    task = jobs.tasks["j1"]
    # Held there: nothing more goes out until an ack comes.
    await asyncio.wait([task], timeout=0.05 * T)  # a bounded look, not the assertion's wait
    assert len(link.audio) == 1 + unacked and not ends(link)
    link.audio[1][1].set_result(None)
    await link.until(lambda: len(link.audio) == 2 + unacked)
    link.ack_all()
    await asyncio.wait_for(task, 5 * T)
    (done,) = ends(link)
    assert isinstance(done, JobDone) and done.chunks == len(link.audio) > 2 + unacked
    frames = [AudioFrame.from_bytes(payload) for payload, _ in link.audio]
    assert [f.index for f in frames] == list(range(len(frames))) and {f.seq for f in frames} == {3}


async def test_a_failed_ack_fails_the_job_and_the_rest_are_not_left_unretrieved() -> None:
    link = HeldAcks()
    jobs = runner(link)
    unretrieved: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unretrieved.append(context))
    await jobs.receive_job(job().to_bytes())
    await link.until(lambda: len(link.audio) >= 1)
    link.audio[0][1].set_result(None)
    await link.until(lambda: len(link.audio) == AUDIO_IN_FLIGHT + 2)
    task = jobs.tasks["j1"]
    link.audio[1][1].set_exception(BrokerError("no PUBACK within the publish timeout"))
    for _, ack in link.audio[2:]:
        ack.set_exception(BrokerError("connection lost"))
    await asyncio.wait_for(task, 5 * T)
    (end,) = ends(link)
    assert isinstance(end, JobError) and len(link.audio) == AUDIO_IN_FLIGHT + 2  # nothing after it
    gc.collect()
    assert not [c for c in unretrieved if "never retrieved" in str(c.get("message"))]


@pytest.mark.parametrize("size", [0, 1, 3])
async def test_an_ack_window_holds_at_most_its_size(size: int) -> None:
    window = AckWindow(size)
    acks = [asyncio.get_running_loop().create_future() for _ in range(size + 1)]
    for ack in acks[:size]:
        await window.add(ack)  # returns at once: within the window
    adding = asyncio.ensure_future(window.add(acks[size]))
    await asyncio.wait([adding], timeout=0.05 * T)
    assert not adding.done()  # waits for the oldest
    acks[0].set_result(None)
    await asyncio.wait_for(adding, T)
    assert len(window) == size
    for ack in acks[1:]:
        ack.set_result(None)
    await window.drain()
    assert len(window) == 0
