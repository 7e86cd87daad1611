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
from concurrent.futures import ThreadPoolExecutor

from synth_worker.config import WorkerConfig
from synth_worker.core import WorkerCore
from synth_worker.worker.base import log
from synth_worker.worker.engine_factory import WorkerEngine, build_engine
from synth_worker.worker.heartbeat import Heartbeats
from synth_worker.worker.model_retry import ModelPreparation
from synth_worker.worker.watchdog import StopPaths

EXIT_STUCK = 70  # EX_SOFTWARE: a job was stuck; the process must be replaced


class Worker(Heartbeats, ModelPreparation, StopPaths):
    """The worker: its state and jobs (``WorkerBase``) and the tasks that keep it alive and stop it."""

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


async def run_worker(config: WorkerConfig, engine: WorkerEngine | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status."""
    import signal

    worker = Worker(config, engine or build_engine(config))
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
