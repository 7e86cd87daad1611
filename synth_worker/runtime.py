"""The worker process: the asyncio adapter around ``WorkerCore``.

``Worker`` owns the MQTT link (last will: retained ``offline`` status), one TaskGroup with the
heartbeat task, the engine preparation task and one task per running job, and the engine. It
reads the wire, feeds the core, and carries out the core's actions. Inference happens on the
engine's own thread, so the heartbeat keeps its rhythm while Bark generates.

Start-up: heartbeats begin at once (``loading``), the model is loaded (SESAME_PRELOAD_MODELS) and
warmed up (SESAME_WARMUP_ON_START), and only then is the worker ``ready``. A model that cannot be
loaded leaves the worker ``unavailable`` with the reason in every heartbeat; it keeps running so
the gateway sees why, rather than a crash loop.

Stopping (``stop()``, wired to SIGTERM/SIGINT): ``draining`` (new and queued jobs are refused with
``draining``), running jobs finish (at most SESAME_DRAIN_TIMEOUT_MS, then they are cancelled), the
retained status becomes ``offline``, the link disconnects.

Healing: an ``unavailable`` worker (the model is not there yet, or a job found the engine
unusable) retries its model every SESAME_MODEL_RETRY_MS and becomes ``ready`` when it loads: no
restart. A job that runs far past its expected time (``WorkerCore.stuck``) cannot be interrupted
inside torch: the worker reports it (``job_stuck`` in the log, ``worker_stuck`` job errors so the
gateway fails over at once, status ``offline``) and ``run()`` returns ``EXIT_STUCK`` so that
whatever supervises it (``sesame-voice up``, systemd, compose) starts a fresh process. Under
systemd (``Type=notify``) the heartbeat loop also pings the watchdog and the worker says
``READY=1`` / ``STOPPING=1``; with SESAME_HEALTH_FILE each heartbeat is written there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Protocol

import structlog

from broker import logs, topics
from broker.audio import AudioFrame, to_pcm16
from broker.errors import BrokerError, EngineCancelled, EngineError
from broker.link import MqttLink, Will
from broker.messages import Heartbeat, Job, WorkerStatus
from broker.sdnotify import Notifier

from . import health
from .config import WorkerConfig
from .core import Action, Send, Start, Stop, WorkerCore
from .engine import CancelToken, Engine, SynthesisRequest
from .voices import VoiceMap

log = logs.get("sesame.worker")

EXIT_STUCK = 70  # EX_SOFTWARE: a job was stuck; the process must be replaced


class WorkerEngine(Engine, Protocol):
    """What the worker needs from an engine beyond ``Engine``: explicit load and warm-up."""

    @property
    def model(self) -> str: ...

    async def load(self) -> float:
        """Get ready to speak (load a model, find a binary); seconds taken. Raises EngineUnavailable."""
        ...

    async def warm_up(self) -> float:
        """One short synthesis; seconds taken."""
        ...

    def close(self) -> None: ...


def build_engine(config: WorkerConfig) -> WorkerEngine:
    voices = VoiceMap.load(config.voices_path)
    if config.engine == "espeak-ng":
        from .espeak import EspeakEngine

        return EspeakEngine(voices, chunk_ms=config.chunk_ms)
    if config.engine == "piper":
        from .piper import PiperEngine

        return PiperEngine(
            voices, voice_override=config.piper_voice, threads=config.piper_threads, chunk_ms=config.chunk_ms
        )
    from synth_worker.bark.synthesis import BarkEngine, BarkSettings

    settings = BarkSettings(
        model=config.model,
        cache_dir=config.model_cache,
        device=config.device,
        temperature=config.temperature,
        semantic_max_tokens=config.semantic_max_tokens,
        torch_threads=config.torch_threads,
        chunk_ms=config.chunk_ms,
        max_batch=config.max_batch,
        seed=config.seed,
        decoder=config.bark_decoder,
        step_mode=config.bark_step,
    )
    return BarkEngine(settings, voices, default_speaker=config.speaker_id)


def package_version() -> str:
    try:
        return metadata.version("sesame-voice")
    except metadata.PackageNotFoundError:
        return "0"


class Worker:
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
            subscriptions=[(self._jobs_topic, 1), (topics.CANCEL, 1)],
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

    def stop(self) -> None:
        """Begin draining (safe to call more than once, from a signal handler)."""
        self._stopping.set()

    async def run(self) -> int:
        log.info(
            "worker_starting",
            engine=self.engine.name,
            model=self.engine.model,
            broker=str(self.config.mqtt_url),
        )
        code = 0
        try:
            async with self.link, asyncio.TaskGroup() as tg:
                self._tg = tg
                beats = tg.create_task(self._heartbeats(), name="heartbeat")
                prepare = tg.create_task(self._prepare(), name="prepare-engine")
                watchdog = tg.create_task(self._watchdog(), name="stuck-watchdog")
                await _first_of(self._stopping, self._stuck)
                prepare.cancel()
                watchdog.cancel()
                if self._stuck.is_set():
                    code = EXIT_STUCK
                    await self._give_up()
                else:
                    self._notifier.notify("STOPPING=1")
                    await self._drain()
                await self._publish_offline()
                beats.cancel()
        finally:
            self._notifier.close()
            if not self._stuck.is_set():
                self.engine.close()  # a stuck engine's thread cannot be joined: the process ends
        log.info("worker_stopped", code=code, **_counters(self.core))
        return code

    # --- MQTT --------------------------------------------------------------------------------------

    async def _on_connect(self, link: MqttLink) -> None:
        status = WorkerStatus(worker_id=self.config.worker_id, state="online", pid=os.getpid())
        await link.publish(self._status_topic, status.to_bytes(), qos=1, retain=True)
        self._beat_now.set()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self._jobs_topic:
            await self._apply(self.core.receive_job(payload, self.clock()))
        elif topic == topics.CANCEL:
            await self._apply(self.core.receive_cancel(payload))
        else:
            log.warning("unexpected_topic", topic=topic)

    async def _publish_offline(self) -> None:
        status = WorkerStatus(worker_id=self.config.worker_id, state="offline", pid=os.getpid())
        try:
            await self.link.publish(self._status_topic, status.to_bytes(), qos=1, retain=True)
        except BrokerError as exc:
            log.warning("offline_status_not_published", error=str(exc))

    # --- tasks -------------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """One heartbeat per interval on a fixed schedule (no drift), plus one at once on changes."""
        loop = asyncio.get_running_loop()
        interval = self.config.heartbeat_interval_s
        topic = topics.worker_heartbeat(self.config.worker_id)
        next_at = loop.time()
        while True:
            self._beat_now.clear()
            self._alive()
            if self.link.connected.is_set():
                beat = self._with_figures(self.core.heartbeat(self.clock()))
                try:
                    await self.link.publish(topic, beat.to_bytes(), qos=0)
                except BrokerError as exc:
                    log.debug("heartbeat_not_sent", error=str(exc))
            next_at += interval
            if next_at < loop.time():  # we fell behind (suspended); do not burst to catch up
                next_at = loop.time() + interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_at):
                    await self._beat_now.wait()
                    next_at = loop.time()  # a state change: beat now, then resume the rhythm

    def _alive(self) -> None:
        """The heartbeat loop runs: tell systemd's watchdog and the health file."""
        state = self.core.state
        self._notifier.notify("WATCHDOG=1", f"STATUS={state}")
        if self._health_path is not None:
            try:
                health.write(
                    self._health_path,
                    state=state,
                    at=time.time(),
                    interval_s=self.config.heartbeat_interval_s,
                    pid=os.getpid(),
                )
            except OSError as exc:
                log.debug("health_file_not_written", error=str(exc))

    def _with_figures(self, beat: Heartbeat) -> Heartbeat:
        """The engine's own figures (Bark's last batch: size, stage times) and the model load time."""
        beat = dataclasses.replace(beat, model_load_s=round(self._load_s, 3))
        times = getattr(getattr(self.engine, "stats", None), "times", None)
        if times is None:
            return beat
        return dataclasses.replace(
            beat,
            batch_size=int(times.batch_size),
            semantic_ms=round(times.semantic_s * 1000, 2),
            coarse_ms=round(times.coarse_s * 1000, 2),
            fine_ms=round(times.fine_s * 1000, 2),
            codec_ms=round(times.codec_s * 1000, 2),
        )

    async def _prepare(self) -> None:
        """Load (and warm up) the model; while it cannot be, retry every SESAME_MODEL_RETRY_MS."""
        attempt = 0
        while True:
            attempt += 1
            if await self._try_prepare(attempt):
                self._unavailable.clear()
                await self._unavailable.wait()  # a job found the engine unusable: heal again
                attempt = 0
                continue
            if self.config.model_retry_s <= 0:
                return
            log.info("model_retry_scheduled", attempt=attempt, retry_in_s=self.config.model_retry_s)
            await asyncio.sleep(self.config.model_retry_s)

    async def _try_prepare(self, attempt: int) -> bool:
        config = self.config
        try:
            if config.preload_models or config.warmup_on_start:
                load_s = self._load_s = await self.engine.load()
                self.core.model = self.engine.model
                log.info("model_loaded", model=self.engine.model, load_s=round(load_s, 3))
                if config.warmup_on_start:
                    self.core.warming()
                    self._beat_now.set()
                    warm_s = await self.engine.warm_up()
                    log.info("model_warmed_up", warm_up_s=round(warm_s, 3))
            else:
                log.info("model_load_deferred", reason="SESAME_PRELOAD_MODELS=false; loads on the first job")
            await self._apply(self.core.ready(self.clock()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the worker stays up and says why (no crash loop)
            reason = str(exc) or type(exc).__name__
            log.error(  # noqa: TRY400 (an EngineError's message is the whole story; no traceback)
                "engine_unavailable",
                engine=self.engine.name,
                reason=reason,
                attempt=attempt,
                exc_info=not isinstance(exc, EngineError),
            )
            await self._apply(self.core.unavailable(reason))
            self._beat_now.set()
            return False
        log.info("worker_ready", worker_id=config.worker_id, attempt=attempt)
        self._notifier.notify("READY=1", "STATUS=ready")
        self._beat_now.set()
        return True

    async def _watchdog(self) -> None:
        """Sleep until the earliest running job would be stuck; if it is, stop the worker."""
        while True:
            self._jobs_changed.clear()
            stuck = self.core.stuck(self.clock())
            if stuck:
                for job, ran_s in stuck:
                    log.error(
                        "job_stuck",
                        job_id=job.job_id,
                        session_id=job.session_id,
                        running_s=round(ran_s, 3),
                        limit_s=round(self.core.stuck_limit_s(job), 3),
                        rtf=round(self.core.rtf, 4),
                    )
                self._stuck.set()
                return
            deadline = self.core.next_deadline()
            wait_s = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._jobs_changed.wait()

    async def _give_up(self) -> None:
        """A job is stuck: fail every job here (the gateway places them elsewhere), stop the rest."""
        await self._apply(self.core.give_up("a job was stuck in the engine; the worker restarts"))
        self._beat_now.set()
        for task in list(self._jobs.values()):
            task.cancel()
        if self._jobs:
            await asyncio.wait(
                list(self._jobs.values()), timeout=max(1.0, self.config.heartbeat_interval_s * 4)
            )

    async def _drain(self) -> None:
        log.info("worker_draining", jobs_in_flight=len(self._jobs), queue_depth=len(self.core.queue))
        await self._apply(self.core.drain())
        self._beat_now.set()
        running = set(self._jobs.values())
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=self.config.drain_timeout_s)
        if pending:
            log.warning("drain_timeout", cancelling=len(pending))
            for token in self._cancels.values():
                token.cancel()
            await asyncio.wait(pending, timeout=max(1.0, self.config.heartbeat_interval_s * 4))

    async def _run_job(self, job: Job, cancel: CancelToken) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.job_id, session_id=job.session_id)
        audio_topic = topics.job_audio(job.reply_to, job.job_id)
        start = time.perf_counter()
        chunks = samples = 0
        try:
            request = SynthesisRequest(text=job.text, voice=job.voice, sample_rate=job.sample_rate)
            async for chunk in self.engine.synthesize(request, cancel):
                _check_cancel(cancel)
                frame = AudioFrame(
                    seq=job.seq, index=chunks, sample_rate=chunk.sample_rate, payload=to_pcm16(chunk.samples)
                )
                await self.link.publish(audio_topic, frame.to_bytes(), qos=1)
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
        for action in actions:
            match action:
                case Send(topic=topic, message=message, qos=qos):
                    try:
                        await self.link.publish(topic, message.to_bytes(), qos=qos)
                    except BrokerError as exc:
                        log.warning("publish_failed", topic=topic, type=message.type, error=str(exc))
                case Start(jobs=jobs):
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


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _check_cancel(cancel: CancelToken) -> None:
    if cancel.cancelled:
        raise EngineCancelled("cancelled")


def _check_audio(chunks: int) -> None:
    if chunks == 0:
        raise EngineError("the engine produced no audio")


def _counters(core: WorkerCore) -> dict[str, int]:
    c = core.counters
    return {
        "accepted": c.accepted,
        "done": c.done,
        "failed": c.failed,
        "cancelled": c.cancelled,
        "expired": c.expired,
        "rejected": c.rejected,
        "bad_messages": c.bad_messages,
    }


async def run_worker(config: WorkerConfig, engine: WorkerEngine | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status."""
    import signal

    worker = Worker(config, engine or build_engine(config))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        return await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
