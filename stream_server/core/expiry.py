"""Keys that expire at a time unless renewed or dropped first: a pure core with a timer.

The resume grace of a detached websocket session (hub/detached.py), the idle timeout of an
MQTT-only session (mqtt/topic_sessions.py) and the renewals of a gateway's session claims
(core/claims.py) are each one of these, woken by the hub's one deadline task
(``next_deadline()``/``handle_timer(now)``) instead of a task sleeping per session.

``next_deadline`` is asked each time the deadline task looks again, several times a turn, so it
does not look at every key: the times are kept in a heap, and a time replaced or dropped stays in it
until it reaches the top, where it is recognised (its key's time is another) and discarded. A gateway
holding 300 sessions scanned 300 claims on every look (issue 20).
"""

from __future__ import annotations

import heapq
import itertools


class ExpiryBook:
    def __init__(self) -> None:
        self._at: dict[str, tuple[float, int]] = {}  # key -> (its time, when it was set)
        self._heap: list[tuple[float, int, str]] = []  # (time, when set, key), stale ones included
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: str) -> bool:
        return key in self._at

    def expire_at(self, key: str, at: float) -> None:
        """``key`` expires at ``at`` (a later or earlier time replaces the one it had)."""
        entry = (at, next(self._order))
        self._at[key] = entry
        heapq.heappush(self._heap, (*entry, key))
        if len(self._heap) > 2 * len(self._at) + 16:  # renewed often and never due: start afresh
            self._heap = [(at, order, key) for key, (at, order) in self._at.items()]
            heapq.heapify(self._heap)

    def setdefault(self, key: str, at: float) -> None:
        """``key`` expires at ``at`` unless it has a time already."""
        if key not in self._at:
            self.expire_at(key, at)

    def drop(self, key: str) -> None:
        self._at.pop(key, None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and self._at.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)  # replaced or dropped since
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> list[str]:
        """The keys whose time has come, in the order they were set; they are forgotten."""
        due: list[tuple[int, str]] = []
        while (at := self.next_deadline()) is not None and at <= now:
            _, order, key = heapq.heappop(self._heap)
            del self._at[key]
            due.append((order, key))
        return [key for _, key in sorted(due)]
