"""Websocket sessions whose socket dropped, kept for a resume (docs/protocol.md): the adapter over
``resume.ReplayLog``.

``detach`` keeps the session for ``SESAME_RESUME_GRACE`` (an ``ExpiryBook`` deadline on the hub's
deadline task, dropped by a resume); meanwhile its frames go to its log only. ``resume`` hands a reconnecting
client the session with every frame from the count it heard queued on a fresh queue, and ends the
writer of the old socket (which may not be known to be dead yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from broker import logs
from stream_server.core.expiry import ExpiryBook
from stream_server.hub.live_sessions import OUT_QUEUE_FRAMES, CloseReason, Outgoing, SessionLink
from stream_server.hub.ports import SessionHost

log = logs.get("sesame.resume")


class DetachHost(SessionHost, Protocol):
    """What ``Detached`` needs of the hub."""

    @property
    def clock(self) -> Callable[[], float]: ...

    def deadline_moved(self) -> None: ...


class Detached:
    def __init__(self, hub: DetachHost) -> None:
        self.hub = hub
        self.grace = ExpiryBook()  # detached session -> the end of its resume grace

    def detach(self, link: SessionLink, attachment: int) -> None:
        """The socket of ``attachment`` dropped without a close: keep the session for a resume."""
        if link.attachment != attachment or link.closed:
            return  # a resume already took it over, or it is closed
        if link.log.limit == 0:
            self.hub.close_session(link, CloseReason.CLIENT_DISCONNECTED)
            return
        link.detached = True
        log.info("session_detached", session_id=link.session_id, sent=link.log.sent)
        self.grace.expire_at(link.session_id, self.hub.clock() + self.hub.config.resume_grace_s)
        self.hub.deadline_moved()

    def next_deadline(self) -> float | None:
        return self.grace.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Close the detached sessions whose grace ended (a resume drops a session's deadline, a
        new detach sets a new one, so a session found still detached here is this deadline's)."""
        for session_id in self.grace.handle_timer(now):
            link = self.hub.sessions.get(session_id)
            if link is not None and link.detached and not link.closed:
                self.hub.close_session(link, CloseReason.RESUME_EXPIRED)

    def resume(self, session_id: str, heard: int) -> SessionLink | None:
        """The session with frames ``heard``... queued for the new socket, or None (not held here,
        closed, or those frames have left the log)."""
        link = self.hub.sessions.get(session_id)
        if link is None or link.closed or link.log.limit == 0:
            return None
        replay = link.log.since(heard)
        if replay is None:
            log.info("resume_refused", session_id=session_id, heard=heard, first=link.log.first)
            return None
        link.end()  # the writer of the old socket stops
        queue: asyncio.Queue[Outgoing] = asyncio.Queue(OUT_QUEUE_FRAMES)
        for item in replay:
            queue.put_nowait(item)
        link.out = queue
        link.attachment += 1
        link.detached = False
        self.grace.drop(session_id)
        log.info("session_resumed", session_id=session_id, heard=heard, replayed=len(replay))
        return link
