"""Resuming a websocket session after a reconnect (docs/protocol.md, "Reconnect and resume"). Pure.

The gateway numbers every frame it sends a session's client after ``ready`` (0, 1, 2, ...; JSON and
binary alike) and keeps the last ``limit`` of them in a ``ReplayLog``. A client that lost its socket
reconnects with ``?session_id=ID&heard=N`` (N = frames it received). The gateway that holds the
session sends frame N onward from the log and goes on live: no frame is lost or sent twice,
including a sentence that was half sent. It also tells the client how many client frames it has
(``received``), so the client resends the frames the dropped socket swallowed.

A session whose socket dropped is kept, detached, for ``grace_s``; its sentences go on being made
and logged meanwhile. A resume fails (the client gets a fresh session) when the gateway does not
hold the session, its grace has run out, or the frames the client needs have left the log.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")


class ReplayLog(Generic[Item]):
    """The last ``limit`` frames sent to one client, numbered from 0."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Item] = deque(maxlen=limit) if limit > 0 else deque(maxlen=0)
        self.sent = 0  # frames ever appended

    @property
    def first(self) -> int:
        """The number of the oldest frame still kept."""
        return self.sent - len(self._items)

    def append(self, item: Item) -> None:
        self._items.append(item)
        self.sent += 1

    def since(self, heard: int) -> list[Item] | None:
        """Frames ``heard``, ``heard + 1``, ...; None when they are not all here any more (or a
        client claims more than was sent)."""
        if heard < self.first or heard > self.sent:
            return None
        return list(self._items)[heard - self.first :]


def parse_resume(session_id: str | None, heard: str | None) -> tuple[str, int] | None:
    """The query parameters of a resume, or None when this is no (valid) resume request."""
    if not session_id or heard is None or not heard.isdigit() or len(heard) > 12:
        return None
    if len(session_id) > 64 or not session_id.isalnum():
        return None
    return session_id, int(heard)
