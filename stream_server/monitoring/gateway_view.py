"""What the monitor reads from the gateway (``GatewayView``, a port: the gateway's ``HubView`` in
status_view.py is one), and ``Changes``, which wakes the open status pages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Protocol


class GatewayView(Protocol):
    """What the monitor reads from the gateway (``HubView`` below is the hub's)."""

    def ready_workers(self) -> list[tuple[str, bool]]:
        """(worker_id, busy) of every ready worker; busy: it has listeners' jobs."""
        ...

    def busy_tiers(self) -> set[str]:
        """In-process tiers with a listener's sentence in synthesis now."""
        ...

    def tier_probe_failed(self, tier: str, reason: str) -> None:
        """A health probe of an in-process tier failed: its circuit breaker should know."""
        ...

    def supervisor_state(self) -> object:
        """The supervisor's state (parsed JSON), or None when the gateway is not supervised.
        Blocking (a small file): called in a thread."""
        ...


class Changes:
    """Wakes every open status page when what it shows changed."""

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._events.add(event)
        try:
            yield event
        finally:
            self._events.discard(event)

    def notify(self) -> None:
        for event in self._events:
            event.set()
