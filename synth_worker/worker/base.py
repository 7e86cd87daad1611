"""The worker's state, its MQTT handlers, and the jobs it runs: what the worker's other parts
(heartbeat, model preparation, watchdog and drain) build on."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import structlog

from broker import logs, topics
from broker.audio import AudioFrame, to_pcm16
from broker.errors import BrokerError, EngineCancelled, EngineError
from broker.link import MqttLink, Will
from broker.messages import Job, JobAck, JobDone, WorkerStatus, worker_messages
from broker.sdnotify import Notifier
from synth_worker.config import WorkerConfig
from synth_worker.core import WorkerCore
from synth_worker.engine import CancelToken, SynthesisRequest
from synth_worker.job_actions import Action, Send, StartJob, Stop
from synth_worker.worker.engine_factory import WorkerEngine

log = logs.get("sesame.worker")

ARRIVALS_KEPT = 1024  # arrival times held for jobs not started yet (cancelled ones age out)


def replayed_will(payload: bytes, pid: int) -> bool:
    """Whether a status on our own status topic is an ``offline`` of process ``pid`` (ours): our
    last will, if we did not say it ourselves. Another pid's is an earlier run's, left alone."""
    status = worker_messages.decode(payload) if payload else None
    return isinstance(status, WorkerStatus) and status.state == "offline" and status.pid == pid


def package_version() -> str:
    try:
        return metadata.version("sesame-voice")
    except metadata.PackageNotFoundError:
        return "0"


class WorkerBase:
    """The worker's state, MQTT handlers and job runner; ``Worker`` adds its long-lived tasks."""

    def __init__(
        self,
        config: WorkerConfig,
        engine: WorkerEngine,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        wid = config.worker_id
        self.core = WorkerCore(
            wid,
            engine=engine.name,
            model=engine.model,
            pid=os.getpid(),
            interval_s=config.heartbeat_interval_s,
            max_queue=config.max_queue,
            max_length=config.max_length,
            max_batch=config.max_batch,
            version=package_version(),
            stuck_factor=config.stuck_factor,
            stuck_floor_s=config.stuck_floor_s,
        )
        self._status_topic = topics.worker_status(wid)
        self._jobs_topic = topics.worker_jobs(wid)
        offline = WorkerStatus(worker_id=wid, state="offline", pid=os.getpid())
        self.link = MqttLink(
            config.mqtt_url,
            client_id=f"sesame-worker-{wid}",
            # Its own status too: a broker cluster may replay this worker's last will from a dead
            # node after the worker moved to another (aedes does); the worker then says online again.
            subscriptions=[(self._jobs_topic, 1), (topics.CANCEL, 1), (self._status_topic, 1)],
            on_message=self._on_message,
            on_connect=self._on_connect,
            will=Will(self._status_topic, offline.to_bytes(), qos=1, retain=True),
        )
        self._tg: asyncio.TaskGroup | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[str, CancelToken] = {}
        self._stopping = asyncio.Event()
        self._stuck = asyncio.Event()
        self._unavailable = asyncio.Event()  # a job found the engine unusable: heal it
        self._jobs_changed = asyncio.Event()
        self._beat_now = asyncio.Event()
        self._notifier = Notifier()
        self._health_path = None if config.health_file is None else Path(config.health_file)
        self._load_s = 0.0
        self._said_offline = False  # this worker published its own offline status (stopping)
        self._arrived: dict[str, float] = {}  # accepted job -> time.monotonic() it came in

    def stop(self) -> None:
        """Begin draining (safe to call more than once, from a signal handler)."""
        self._stopping.set()

    # --- MQTT --------------------------------------------------------------------------------------

    async def _on_connect(self, link: MqttLink) -> None:
        status = WorkerStatus(worker_id=self.config.worker_id, state="online", pid=os.getpid())
        await link.publish(self._status_topic, status.to_bytes(), qos=1, retain=True)
        self._beat_now.set()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self._jobs_topic:
            arrived = time.monotonic()
            actions = self.core.receive_job(payload, self.clock())
            for action in actions:  # an accepted job's ack: when it came in (debug stamps)
                if isinstance(action, Send) and isinstance(action.message, JobAck):
                    self._arrived[action.message.job_id] = arrived
                    while len(self._arrived) > ARRIVALS_KEPT:
                        del self._arrived[next(iter(self._arrived))]
            await self._apply(actions)
        elif topic == topics.CANCEL:
            await self._apply(self.core.receive_cancel(payload))
        elif topic == self._status_topic:
            await self._own_status(payload)
        else:
            log.warning("unexpected_topic", topic=topic)

    async def _own_status(self, payload: bytes) -> None:
        """Our own status came back: an ``offline`` from this very process that we did not say
        is our last will, replayed by a broker node after the link moved away from a dead one."""
        if self._said_offline or not self.link.connected.is_set() or not replayed_will(payload, os.getpid()):
            return
        await self._on_connect(self.link)  # online again (acknowledged by the broker), then the log
        log.warning("stale_last_will", broker=str(self.link.node))

    async def _publish_offline(self) -> None:
        self._said_offline = True
        status = WorkerStatus(worker_id=self.config.worker_id, state="offline", pid=os.getpid())
        try:
            await self.link.publish(self._status_topic, status.to_bytes(), qos=1, retain=True)
        except BrokerError as exc:
            log.warning("offline_status_not_published", error=str(exc))

    async def _run_job(self, job: Job, cancel: CancelToken) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.job_id, session_id=job.session_id)
        audio_topic = topics.job_audio(job.reply_to, job.job_id)
        start = time.perf_counter()
        # Debug stamps (Job.stamp): received, engine started, first samples, first chunk published.
        received = self._arrived.pop(job.job_id, None)
        stamps = [time.monotonic() if received is None else received, time.monotonic()]
        chunks = samples = 0
        try:
            request = SynthesisRequest(text=job.text, voice=job.voice, sample_rate=job.sample_rate)
            async for chunk in self.engine.synthesize(request, cancel):
                if chunks == 0:
                    stamps.append(time.monotonic())
                _check_cancel(cancel)
                frame = AudioFrame(
                    seq=job.seq, index=chunks, sample_rate=chunk.sample_rate, payload=to_pcm16(chunk.samples)
                )
                await self.link.publish(audio_topic, frame.to_bytes(), qos=1)
                if chunks == 0:
                    stamps.append(time.monotonic())
                chunks += 1
                samples += len(chunk.samples)
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
            self._jobs.pop(job.job_id, None)
            self._cancels.pop(job.job_id, None)
            self._jobs_changed.set()
        if self.core.state == "unavailable":
            self._unavailable.set()
        await self._apply(actions)

    # --- actions -----------------------------------------------------------------------------------

    async def _apply(self, actions: list[Action]) -> None:
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
                    assert self._tg is not None
                    for job in jobs:
                        token = CancelToken()
                        self._cancels[job.job_id] = token
                        self._jobs[job.job_id] = self._tg.create_task(
                            self._run_job(job, token), name=f"job:{job.job_id}"
                        )
                    self._jobs_changed.set()
                case Stop(job_id=job_id):
                    running = self._cancels.get(job_id)
                    if running is not None:
                        running.cancel()


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


def _check_cancel(cancel: CancelToken) -> None:
    if cancel.cancelled:
        raise EngineCancelled("cancelled")


def _check_audio(chunks: int) -> None:
    if chunks == 0:
        raise EngineError("the engine produced no audio")
