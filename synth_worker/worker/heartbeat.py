"""The worker's heartbeat: a fixed rhythm, one at once on a change, systemd's watchdog, the health
file, engine figures. Its own task: the heartbeat is the worker's sign of life and keeps its rhythm
whatever else the worker does."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from broker import logs, topics
from broker.errors import BrokerError
from broker.link import MqttLink
from broker.messages import Heartbeat
from broker.sdnotify import Notifier
from synth_worker import health
from synth_worker.config import WorkerConfig
from synth_worker.core import WorkerCore
from synth_worker.engines import WorkerEngine

log = logs.get("sesame.worker")


class Heartbeats:
    def __init__(
        self,
        config: WorkerConfig,
        core: WorkerCore,
        engine: WorkerEngine,
        link: MqttLink,
        notifier: Notifier,
        *,
        clock: Callable[[], float],
        load_s: Callable[[], float],
    ) -> None:
        self.interval_s = config.heartbeat_interval_s
        self.topic = topics.worker_heartbeat(config.worker_id)
        self.core = core
        self.engine = engine
        self.link = link
        self.notifier = notifier
        self.clock = clock
        self._load_s = load_s  # the last model load's time, for the heartbeat's figures
        self._health_path = None if config.health_file is None else Path(config.health_file)
        self._beat_now = asyncio.Event()

    def now(self) -> None:
        """The state changed: beat at once (then resume the rhythm)."""
        self._beat_now.set()

    async def run(self) -> None:
        """One heartbeat per interval on a fixed schedule (no drift), plus one at once on changes."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._beat_now.clear()
            self._alive()
            if self.link.connected.is_set():
                beat = self._with_figures(self.core.heartbeat(self.clock()))
                try:
                    await self.link.publish(self.topic, beat.to_bytes(), qos=0)
                except BrokerError as exc:
                    log.debug("heartbeat_not_sent", error=str(exc))
            next_at += self.interval_s
            if next_at < loop.time():  # we fell behind (suspended); do not burst to catch up
                next_at = loop.time() + self.interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_at):
                    await self._beat_now.wait()
                    next_at = loop.time()  # a state change: beat now, then resume the rhythm

    def _alive(self) -> None:
        """The heartbeat loop runs: tell systemd's watchdog and the health file."""
        state = self.core.state
        self.notifier.notify("WATCHDOG=1", f"STATUS={state}")
        if self._health_path is not None:
            try:
                health.write(
                    self._health_path,
                    state=state,
                    at=time.time(),
                    interval_s=self.interval_s,
                    pid=os.getpid(),
                )
            except OSError as exc:
                log.debug("health_file_not_written", error=str(exc))

    def _with_figures(self, beat: Heartbeat) -> Heartbeat:
        """The engine's own figures (Bark's last batch: size, stage times) and the model load time."""
        beat = dataclasses.replace(beat, model_load_s=round(self._load_s(), 3))
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
