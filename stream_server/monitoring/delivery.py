"""When to post which alert notice: one at a time, in order, failed posts retried with jittered
exponential backoff. A pure core (no clock, no I/O): ``send(alert, now)`` queues a notice,
``handle_timer(now)`` answers the ``Post`` to make when ``next_deadline()`` has come, ``posted(error,
now)`` is told how it went. The webhook sender (``webhook.py``) carries out the actions; the
monitor's one deadline task wakes it.

The queue is bounded: when it is full the oldest waiting notice is dropped (``Dropped``). A
receiver that refuses a request (HTTP 4xx but 429) is not asked again (``GaveUp``), nor is one that
failed ``max_attempts`` times.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from stream_server.monitoring.alerts import Alert


@dataclass(frozen=True, slots=True)
class Post:
    alert: Alert
    attempt: int


@dataclass(frozen=True, slots=True)
class Delivered:
    alert: Alert
    attempt: int


@dataclass(frozen=True, slots=True)
class Retrying:
    alert: Alert
    attempt: int  # the attempt that failed
    error: str
    in_s: float


@dataclass(frozen=True, slots=True)
class GaveUp:
    alert: Alert
    error: str


@dataclass(frozen=True, slots=True)
class Dropped:
    alert: Alert


DeliveryAction = Post | Delivered | Retrying | GaveUp | Dropped


def _jitter() -> float:
    return random.uniform(0.5, 1.0)


class DeliveryCore:
    def __init__(
        self,
        *,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        queue_size: int = 100,
        jitter: Callable[[], float] = _jitter,  # the share of the backoff waited, drawn per retry
    ) -> None:
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.jitter = jitter
        self.queue: deque[Alert] = deque(maxlen=queue_size)  # waiting, not the one being posted
        self._current: Alert | None = None
        self._attempt = 0
        self._delay = backoff_s
        self._due: float | None = None  # when to post (the next notice, or a retry)

    def send(self, alert: Alert, now: float) -> list[DeliveryAction]:
        dropped: list[DeliveryAction] = []
        if len(self.queue) == self.queue.maxlen:
            dropped.append(Dropped(self.queue[0]))
        self.queue.append(alert)
        if self._current is None and self._due is None:
            self._due = now
        return dropped

    def next_deadline(self) -> float | None:
        return self._due

    def handle_timer(self, now: float) -> list[DeliveryAction]:
        if self._due is None or now < self._due:
            return []
        self._due = None
        if self._current is None:
            if not self.queue:
                return []
            self._current, self._attempt, self._delay = self.queue.popleft(), 0, self.backoff_s
        self._attempt += 1
        return [Post(self._current, self._attempt)]

    def posted(self, error: str | None, now: float) -> list[DeliveryAction]:
        """The post of ``handle_timer``'s last ``Post`` ended: ``error`` None when delivered."""
        alert, attempt = self._current, self._attempt
        assert alert is not None, "posted() without a Post"
        refused = error is not None and error.startswith("http_4") and error != "http_429"
        if error is not None and not refused and attempt < self.max_attempts:
            in_s = self._delay * self.jitter()
            self._due, self._delay = now + in_s, min(self.max_backoff_s, self._delay * 2)
            return [Retrying(alert, attempt, error, in_s)]
        self._current = None
        if self.queue:
            self._due = now
        return [Delivered(alert, attempt)] if error is None else [GaveUp(alert, error)]
