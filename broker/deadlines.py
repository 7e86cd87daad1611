"""The one deadline task of a process part: it sleeps until the earliest ``next_deadline()`` of the
cores it drives, or until it is woken because an event may have moved that deadline earlier, and
then hands them ``now`` (``handle_timer``). Nothing polls: an idle part sleeps until its next
deadline, or for ever when there is none.

The gateway's hub runs one (scheduler, health sampler, claims, resume grace, in-process tier
queues, the SIGTERM drain), the monitor one (probes, alerts, webhook retries, store compaction),
the worker one (model retry). The cores stay pure: this is the only place that reads the clock to
decide when to wake them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from broker import logs

log = logs.get("sesame.deadlines")


class DeadlineLoop:
    def __init__(
        self,
        next_deadline: Callable[[], float | None],
        handle_timer: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self._next_deadline = next_deadline
        self._handle_timer = handle_timer
        self.clock = clock
        self._wake = asyncio.Event()
        self.wakeups = 0  # times the task woke (bench/timer_accuracy.py counts the hub's)

    def wake(self) -> None:
        """A deadline may be earlier now: look again."""
        self._wake.set()

    @property
    def woken(self) -> bool:
        """Woken, and not run since."""
        return self._wake.is_set()

    async def run(self) -> None:
        while True:
            deadline = self._next_deadline()
            delay = None if deadline is None else deadline - self.clock()
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            self._wake.clear()
            self.wakeups += 1
            now = self.clock()
            if deadline is not None and now >= deadline:
                try:
                    self._handle_timer(now)
                except Exception:  # a bug in one decision must not stop the clock for everyone
                    log.exception("timer_failed")
                self._wake.clear()  # the loop looks at the deadlines again anyway
