"""Publishes in flight, their acknowledgements awaited ``size`` behind.

A worker used to await each audio chunk's PUBACK before it published the next: for an engine that
has a whole sentence ready (espeak-ng, a Piper piece, a cached clause) that is a round trip with
mosquitto per 40 ms chunk, the worker and the broker waking each other ~60 times a sentence while
the gateway forwards the first frames: on 2 cores the listener (or nginx) then waited for a CPU
(issue 20, docs/benchmarks.md). Now chunks go out back to back and the worker waits only when
``size`` are unacknowledged: the same QoS 1 delivery and order (one connection), the same bound
on what a slow broker lets pile up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable


class AckWindow:
    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("an ack window holds 0 or more publishes")
        self.size = size
        self._acks: deque[Awaitable[None]] = deque()

    def __len__(self) -> int:
        return len(self._acks)

    async def add(self, ack: Awaitable[None]) -> None:
        """A publish just written; returns once at most ``size`` are unacknowledged. A failed
        acknowledgement (BrokerError) raises here, as awaiting that publish would have."""
        self._acks.append(ack)
        while len(self._acks) > self.size:
            await self._acks.popleft()

    async def drain(self) -> None:
        """Every publish acknowledged (or the first failure raised)."""
        while self._acks:
            await self._acks.popleft()

    def abandon(self) -> None:
        """The publisher stopped (cancelled, or one failed): the rest are not awaited, and their
        failures are not reported as never retrieved."""
        while self._acks:
            ack = self._acks.popleft()
            if isinstance(ack, asyncio.Future):
                ack.add_done_callback(_quiet)
            elif asyncio.iscoroutine(ack):
                ack.close()  # not started: nothing was sent


def _quiet(ack: asyncio.Future[None]) -> None:
    if not ack.cancelled():
        ack.exception()
