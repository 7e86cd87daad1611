"""Stopping the worker: the stuck-job watchdog, giving up on a stuck engine, and the drain."""

from __future__ import annotations

import asyncio
import contextlib

from synth_worker.worker.base import WorkerBase, log


class StopPaths(WorkerBase):
    """The stuck-job watchdog and the two ways out: give up (stuck) or drain (told to stop)."""

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
            _, pending = await asyncio.wait(pending, timeout=max(1.0, self.config.heartbeat_interval_s * 4))
        if pending:  # deaf to its token (a publish, a pipe): the TaskGroup would wait on it for ever
            log.warning("drain_cancelling_tasks", jobs=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)
