"""The worker's job runner: jobs and cancels in from MQTT, fed to ``WorkerCore``, its actions
carried out (acks and replies published, a task per running job, cancel tokens set), and how the
running jobs end when the worker stops: finished (drained) or cancelled (a job is stuck).

A job started at once is acknowledged by its first audio frame (the gateway takes the first audio
of a job as its ack): its ``ack`` is held, and published only if no audio has gone out within
``ACK_HOLD_S`` (broker/messages.py). The ack went out just before the engine started, and the
broker's and the gateway's handling of it took the machine's CPUs while the engine made the first
audio (issue 20, docs/benchmarks.md). A job that waits in the queue is acknowledged at once, with
its place."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import structlog

from broker import logs, topics
from broker.ack_window import AckWindow
from broker.audio import AudioFrame, to_pcm16
from broker.errors import BrokerError, EngineCancelled, EngineError
from broker.link import MqttLink
from broker.messages import ACK_HOLD_S, Job, JobAck, JobDone
from synth_worker.core import WorkerCore
from synth_worker.engine import CancelToken, SynthesisRequest
from synth_worker.engines import WorkerEngine
from synth_worker.job_actions import Action, Send, StartJob, Stop
from synth_worker.job_deadline import need_s, urgent

log = logs.get("sesame.worker")

AUDIO_IN_FLIGHT = 16  # audio chunks published and not yet acknowledged, at most (ack_window.py)
ARRIVALS_KEPT = 1024  # arrival times held for jobs not started yet (cancelled ones age out)

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class JobRunner:
    def __init__(
        self,
        core: WorkerCore,
        engine: WorkerEngine,
        link: MqttLink,
        *,
        clock: Callable[[], float],
        spawn: Spawn,
        changed: Callable[[], None],
        ack_hold_s: float = ACK_HOLD_S,
    ) -> None:
        self.core = core
        self.engine = engine
        self.link = link
        self.clock = clock
        self._spawn = spawn
        self._changed = changed  # jobs started or ended: the deadline task looks again
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[str, CancelToken] = {}
        self._arrived: dict[str, float] = {}  # accepted job -> time.monotonic() it came in
        self.ack_hold_s = ack_hold_s
        self.held_acks: dict[str, asyncio.TimerHandle] = {}  # job started at once -> its held ack's timer

    async def receive_job(self, payload: bytes) -> None:
        arrived = time.monotonic()
        actions = self.core.receive_job(payload, self.clock())
        started = {job.job_id for a in actions if isinstance(a, StartJob) for job in a.jobs}
        now: list[Action] = []
        for action in actions:  # an accepted job's ack: when it came in (debug stamps)
            if isinstance(action, Send) and isinstance(action.message, JobAck):
                job_id = action.message.job_id
                self._arrived[job_id] = arrived
                while len(self._arrived) > ARRIVALS_KEPT:
                    del self._arrived[next(iter(self._arrived))]
                if job_id in started:
                    self._hold_ack(job_id, action)
                    continue
            now.append(action)
        await self.apply(now)

    def _hold_ack(self, job_id: str, ack: Send) -> None:
        def due() -> None:  # no audio yet: the ack goes now, if the job is still running
            task = self.tasks.get(job_id)
            if self.held_acks.pop(job_id, None) is not None and task is not None and not task.done():
                self._spawn(self.apply([ack]), f"ack:{job_id}")

        self.held_acks[job_id] = asyncio.get_running_loop().call_later(self.ack_hold_s, due)

    def _release_ack(self, job_id: str) -> None:
        """The job's first audio (or its end: done or an error) answers for its held ack."""
        if (timer := self.held_acks.pop(job_id, None)) is not None:
            timer.cancel()

    async def receive_cancel(self, payload: bytes) -> None:
        await self.apply(self.core.receive_cancel(payload))

    async def _run_job(self, job: Job, cancel: CancelToken) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.job_id, session_id=job.session_id)
        audio_topic = topics.job_audio(job.reply_to, job.job_id)
        start = time.perf_counter()
        # Debug stamps (Job.stamp): received, engine started, first samples, first chunk published.
        received = self._arrived.pop(job.job_id, None)
        stamps = [time.monotonic() if received is None else received, time.monotonic()]
        chunks = samples = 0
        in_flight = AckWindow(AUDIO_IN_FLIGHT)
        try:
            needed_now = urgent(stamps[0], job.need_in_s, stamps[1])
            need = need_s(stamps[0], job.need_in_s, stamps[1])
            request = SynthesisRequest(job.text, job.voice, job.sample_rate, needed_now, need)
            async for chunk in self.engine.synthesize(request, cancel):
                if chunks == 0:
                    stamps.append(time.monotonic())
                    self._release_ack(job.job_id)  # this audio answers for it
                cancel.check()
                frame = AudioFrame(
                    seq=job.seq, index=chunks, sample_rate=chunk.sample_rate, payload=to_pcm16(chunk.samples)
                )
                await in_flight.add(self.link.publish_now(audio_topic, frame.to_bytes(), qos=1))
                if chunks == 0:
                    await in_flight.drain()
                    stamps.append(time.monotonic())
                chunks += 1
                samples += len(chunk.samples)
            await in_flight.drain()  # the done follows the audio it counts
            _check_audio(chunks)
            actions = self.core.job_done(
                job.job_id,
                chunks=chunks,
                samples=samples,
                sample_rate=job.sample_rate,
                synth_s=time.perf_counter() - start,
                now=self.clock(),
            )
            actions = with_stamps(actions, job, tuple(stamps))
        except asyncio.CancelledError:
            self.core.job_failed(job.job_id, EngineCancelled("worker stopped"), self.clock())
            raise
        except Exception as exc:
            if not isinstance(exc, (EngineError, BrokerError)) and getattr(exc, "code", None) is None:
                log.exception("job_crashed", job_id=job.job_id)
            actions = self.core.job_failed(job.job_id, exc, self.clock())
        finally:
            in_flight.abandon()
            self._release_ack(job.job_id)
            self.tasks.pop(job.job_id, None)
            self._cancels.pop(job.job_id, None)
            self._changed()
        await self.apply(actions)

    async def apply(self, actions: list[Action]) -> None:
        # Jobs start before the replies are awaited (a QoS 1 publish waits for the broker's PUBACK):
        # an accepted job's engine does not wait a round trip behind its ack. The ack still goes
        # out first: its packet is written before the job's task first runs.
        for action in sorted(actions, key=lambda a: not isinstance(a, (StartJob, Stop))):
            match action:
                case Send(topic=topic, message=message, qos=qos):
                    try:
                        await self.link.publish(topic, message.to_bytes(), qos=qos)
                    except BrokerError as exc:
                        log.warning("publish_failed", topic=topic, type=message.type, error=str(exc))
                case StartJob(jobs=jobs):
                    for job in jobs:
                        token = CancelToken()
                        self._cancels[job.job_id] = token
                        self.tasks[job.job_id] = self._spawn(self._run_job(job, token), f"job:{job.job_id}")
                    self._changed()
                case Stop(job_id=job_id):
                    running = self._cancels.get(job_id)
                    if running is not None:
                        running.cancel()

    # --- how the running jobs end when the worker stops ---------------------------------------------

    async def cancel_running(self, wait_s: float) -> None:
        """A job is stuck (the core has failed every job): cancel the tasks, wait ``wait_s`` at most."""
        for task in list(self.tasks.values()):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=wait_s)

    async def finish_running(self, timeout_s: float, wait_s: float) -> None:
        """Draining: let the running jobs finish (``timeout_s``, then cancel them)."""
        running = set(self.tasks.values())
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=timeout_s)
        if pending:
            log.warning("drain_timeout", cancelling=len(pending))
            for token in self._cancels.values():
                token.cancel()
            _, pending = await asyncio.wait(pending, timeout=wait_s)
        if pending:  # deaf to its token (a publish, a pipe): the TaskGroup would wait on it for ever
            log.warning("drain_cancelling_tasks", jobs=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)


def with_stamps(actions: list[Action], job: Job, stamps: tuple[float, ...]) -> list[Action]:
    """A stamped job's ``done`` carries the worker's hop stamps (``Job.stamp``, a debug field)."""
    if not job.stamp:
        return actions
    return [
        replace(a, message=replace(a.message, stamps=stamps))
        if isinstance(a, Send) and isinstance(a.message, JobDone)
        else a
        for a in actions
    ]


def _check_audio(chunks: int) -> None:
    if chunks == 0:
        raise EngineError("the engine produced no audio")
