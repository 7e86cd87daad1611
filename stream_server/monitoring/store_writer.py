"""The monitor's disk side: one task that runs ``UptimeStore`` calls in ``asyncio.to_thread``, in order.

``write(job, then)`` queues a call (never blocks: a full queue drops it and counts
``sesame_dropped_total{what="uptime_write"}``); ``then`` runs back on the event loop with the
result. ``read_figures`` is what the status page, ``/metrics`` and voice-metrics show: persisted
uptime per path and window, and this month's downtime against the budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from broker import logs
from stream_server.monitoring.alerts import Kind, OpenAlert
from stream_server.monitoring.uptime_store import UptimeStore

log = logs.get("sesame.monitor")

Job = Callable[[UptimeStore], Any]
Then = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Figures:
    uptime: dict[str, dict[str, float | None]] = field(default_factory=dict)  # path -> window -> %
    month: dict[str, float] = field(default_factory=dict)  # downtimeMinutes, budgetMinutes, ...
    day_samples: int = 0  # primary samples in the last 24 h


def read_figures(
    store: UptimeStore, paths: tuple[str, ...], primary: str, now: float, target: float
) -> Figures:
    return Figures(
        uptime={
            path: {w: None if v is None else round(v, 3) for w, v in store.uptimes(path, now).items()}
            for path in paths
        },
        month=store.month(primary, now, target),
        day_samples=store.window(primary, now, 86400).samples,
    )


def load_open_alerts(store: UptimeStore) -> list[OpenAlert]:
    return [OpenAlert(k, cast(Kind, kind), since, summary) for k, kind, since, summary in store.open_alerts()]


class StoreWriter:
    def __init__(self, store: UptimeStore, on_dropped: Callable[[], None], size: int = 10_000) -> None:
        self.store = store
        self._on_dropped = on_dropped
        self._queue: asyncio.Queue[tuple[Job, Then | None]] = asyncio.Queue(size)

    def write(self, job: Job, then: Then | None = None) -> None:
        try:
            self._queue.put_nowait((job, then))
        except asyncio.QueueFull:
            self._on_dropped()

    async def run(self) -> None:
        while True:
            job, then = await self._queue.get()
            try:
                result = await asyncio.to_thread(job, self.store)
                if then is not None:
                    then(result)
            except Exception:  # the store logs its own failures; a bug here must not stop monitoring
                log.exception("uptime_store_job_failed")

    async def close(self) -> None:
        """Write what is still queued, then close the file."""
        while not self._queue.empty():
            job, _ = self._queue.get_nowait()
            await asyncio.to_thread(job, self.store)
        await asyncio.to_thread(self.store.close)
