"""Websocket sessions whose socket dropped, kept for a resume (docs/protocol.md): the adapter over
``resume.ReplayLog``.

``detach`` keeps the session for ``SESAME_RESUME_GRACE`` (a task sleeping until exactly then,
cancelled by a resume); meanwhile its frames go to its log only. ``resume`` hands a reconnecting
client the session with every frame from the count it heard queued on a fresh queue, and ends the
writer of the old socket (which may not be known to be dead yet).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from broker import logs
from stream_server.hub.live_sessions import OUT_QUEUE_FRAMES, CloseReason, Outgoing, SessionLink
from stream_server.hub.ports import SessionHost, TaskHost

log = logs.get("sesame.resume")


class DetachHost(SessionHost, TaskHost, Protocol):
    """What ``Detached`` needs of the hub."""


class Detached:
    def __init__(self, hub: DetachHost) -> None:
        self.hub = hub

    def detach(self, link: SessionLink, attachment: int) -> None:
        """The socket of ``attachment`` dropped without a close: keep the session for a resume."""
        if link.attachment != attachment or link.closed:
            return  # a resume already took it over, or it is closed
        if link.log.limit == 0:
            self.hub.close_session(link, CloseReason.CLIENT_DISCONNECTED)
            return
        link.detached = True
        log.info("session_detached", session_id=link.session_id, sent=link.log.sent)
        link.expiry = self.hub.spawn(self._expire(link, attachment), f"resume-grace:{link.session_id}")

    async def _expire(self, link: SessionLink, attachment: int) -> None:
        await asyncio.sleep(self.hub.config.resume_grace_s)  # the deadline itself, not a poll
        if link.detached and link.attachment == attachment:
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
        if link.expiry is not None:
            link.expiry.cancel()
            link.expiry = None
        log.info("session_resumed", session_id=session_id, heard=heard, replayed=len(replay))
        return link
