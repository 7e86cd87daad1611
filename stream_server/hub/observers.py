"""Who sees every scheduler action the hub carries out and every heartbeat it reads (monitoring,
stream_server/monitoring/hooks.py). A small registry: the composition root builds it, hands it to
the hub and subscribes the monitor once the monitor exists; the hub never has fields set after it
was built."""

from __future__ import annotations

from collections.abc import Callable

from broker.messages import Heartbeat
from stream_server.core.actions import Action

Observer = Callable[[Action | Heartbeat], None]


class Observers:
    def __init__(self) -> None:
        self._subscribers: list[Observer] = []

    def subscribe(self, observer: Observer) -> None:
        self._subscribers.append(observer)

    def __call__(self, item: Action | Heartbeat) -> None:
        for observe in self._subscribers:
            observe(item)
