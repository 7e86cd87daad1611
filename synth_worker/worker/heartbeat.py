"""The worker's heartbeat loop: a fixed rhythm, systemd's watchdog, the health file, engine figures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time

from broker import topics
from broker.errors import BrokerError
from broker.messages import Heartbeat
from synth_worker import health
from synth_worker.worker.base import WorkerBase, log


class Heartbeats(WorkerBase):
    """Heartbeats, one per interval and one at once on a change."""

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
