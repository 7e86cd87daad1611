"""The worker process: the asyncio adapter around ``WorkerCore``.

``Worker`` is composed of parts, each an object it builds and passes what it needs: the job runner
(``jobs.py``: MQTT jobs and cancels in, the core's actions carried out, a task per running job),
the heartbeat (``heartbeat.py``, its own task), the model retry (``synth_worker/model_retry.py``, a
pure core; ``model_loader.py`` runs an attempt) and the stuck-job watchdog (``watchdog.py``). It
owns the MQTT link (last will: retained ``offline`` status), the engine, one TaskGroup, and one
deadline task (``broker.deadlines``) that wakes the retry core and the watchdog. Inference happens on the
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
import os
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

from broker import logs, topics
from broker.deadlines import DeadlineLoop
from broker.errors import BrokerError
from broker.link import MqttLink, Will
from broker.messages import WorkerStatus, worker_messages
from broker.sdnotify import Notifier
from synth_worker.config import WorkerConfig
from synth_worker.core import WorkerCore
from synth_worker.engines import WorkerEngine, build_worker_engine
from synth_worker.model_retry import ModelRetry
from synth_worker.voices import VoiceMap
from synth_worker.worker.heartbeat import Heartbeats
from synth_worker.worker.jobs import JobRunner
from synth_worker.worker.model_loader import ModelLoader
from synth_worker.worker.watchdog import Watchdog

log = logs.get("sesame.worker")

EXIT_STUCK = 70  # EX_SOFTWARE: a job was stuck; the process must be replaced


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


class Worker:
    def __init__(
        self, config: WorkerConfig, engine: WorkerEngine, *, clock: Callable[[], float] = time.time
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
            max_late_s=config.max_late_s,
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
        self.notifier = Notifier()
        self.deadlines = DeadlineLoop(self.next_deadline, self.handle_timer, clock)
        self.jobs = JobRunner(
            self.core, engine, self.link, clock=clock, spawn=self._spawn, changed=self._jobs_changed
        )
        self.retry = ModelRetry(config.model_retry_s)
        self.loader = ModelLoader(
            config, self.core, engine, self.notifier,
            clock=clock, apply=self.jobs.apply, state_changed=self._state_changed,
        )  # fmt: skip
        self.heartbeats = Heartbeats(
            config,
            self.core,
            engine,
            self.link,
            self.notifier,
            clock=clock,
            load_s=lambda: self.loader.load_s,
        )
        self.watchdog = Watchdog(self.core)
        self._tg: asyncio.TaskGroup | None = None
        self._loading: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stuck = asyncio.Event()
        self._said_offline = False  # this worker published its own offline status (stopping)

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
        wait_s = max(1.0, self.config.heartbeat_interval_s * 4)
        try:
            async with self.link, asyncio.TaskGroup() as tg:
                self._tg = tg
                beats = tg.create_task(self.heartbeats.run(), name="heartbeat")
                self.retry.start(self.clock())
                deadlines = tg.create_task(self.deadlines.run(), name="worker-deadlines")
                await _first_of(self._stopping, self._stuck)
                deadlines.cancel()
                if self._loading is not None:
                    self._loading.cancel()
                if self._stuck.is_set():
                    code = EXIT_STUCK
                    await self.jobs.apply(
                        self.core.give_up("a job was stuck in the engine; the worker restarts")
                    )
                    self.heartbeats.now()
                    await self.jobs.cancel_running(wait_s)
                else:
                    self.notifier.notify("STOPPING=1")
                    log.info(
                        "worker_draining",
                        jobs_in_flight=len(self.jobs.tasks),
                        queue_depth=len(self.core.queue),
                    )
                    await self.jobs.apply(self.core.drain())
                    self.heartbeats.now()
                    await self.jobs.finish_running(self.config.drain_timeout_s, wait_s)
                await self._publish_offline()
                beats.cancel()
        finally:
            self._tg = None
            self.notifier.close()
            if not self._stuck.is_set():
                self.engine.close()  # a stuck engine's thread cannot be joined: the process ends
        log.info("worker_stopped", code=code, **_counters(self.core))
        return code

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise RuntimeError("the worker is not running")
        return self._tg.create_task(coro, name=name)

    # --- time: model retry and the stuck-job watchdog ----------------------------------------------

    def next_deadline(self) -> float | None:
        timed = (self.retry.next_deadline(), self.watchdog.next_deadline())
        return min((d for d in timed if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        for load in self.retry.handle_timer(now):
            self._loading = self._spawn(self._load(load.attempt), "prepare-engine")
        if self.watchdog.handle_timer(now):
            self._stuck.set()

    async def _load(self, attempt: int) -> None:
        if await self.loader.attempt(attempt):
            self.retry.loaded()
        elif (retry_at := self.retry.failed(self.clock())) is not None:
            log.info("model_retry_scheduled", attempt=attempt, retry_in_s=round(retry_at - self.clock(), 3))
        self.deadlines.wake()

    def _jobs_changed(self) -> None:
        if self.core.state == "unavailable":  # a job found the engine unusable: heal it
            self.retry.unusable(self.clock())
        self.deadlines.wake()

    def _state_changed(self) -> None:
        self.heartbeats.now()

    # --- MQTT: jobs and cancels to the job runner, our own status here -----------------------------

    async def _on_connect(self, link: MqttLink) -> None:
        status = WorkerStatus(worker_id=self.config.worker_id, state="online", pid=os.getpid())
        await link.publish(self._status_topic, status.to_bytes(), qos=1, retain=True)
        self.heartbeats.now()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self._jobs_topic:
            await self.jobs.receive_job(payload)
        elif topic == topics.CANCEL:
            await self.jobs.receive_cancel(payload)
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


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


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


def worker_engine(config: WorkerConfig) -> WorkerEngine:
    """The engine SESAME_ENGINE names, built by the one engine factory (``synth_worker.engines``)."""
    return build_worker_engine(config.engine, VoiceMap.load(config.voices_path), config.engine_settings())


async def run_worker(config: WorkerConfig, engine: WorkerEngine | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status."""
    import signal

    worker = Worker(config, engine or worker_engine(config))
    loop = asyncio.get_running_loop()
    # asyncio.run joins its default executor's threads without a bound (Python 3.11): a
    # ``to_thread`` call still running at the end (an import while a model loaded) would hold the
    # worker's exit. Ours is let go at the end instead; a thread of it still busy is then seen
    # by ``synth_worker.main.held_threads``.
    executor = ThreadPoolExecutor(thread_name_prefix="worker-io")
    loop.set_default_executor(executor)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        return await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))  # empty: shut down at once
        executor.shutdown(wait=False, cancel_futures=True)
