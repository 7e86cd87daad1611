"""Websocket sessions whose socket dropped, kept for a resume (docs/protocol.md): the adapter over
``resume.ReplayLog``.

``detach`` keeps the session for ``SESAME_RESUME_GRACE`` (an ``ExpiryBook`` deadline on the hub's
deadline task, dropped by a resume); meanwhile its frames go to its log only. ``resume`` hands a reconnecting
client that shows the session's resume token the session with every frame from the count it heard
queued on a fresh queue, and ends the writer of the old socket (which may not be known to be dead
yet, or may still be attached: it is then closed with ``RESUMED_ELSEWHERE``). ``issue`` makes the
token of each ``ready``. A wrong token is counted against the peer (``resume.ResumeThrottle``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from broker import logs
from stream_server.core.expiry import ExpiryBook
from stream_server.core.resume import ResumeRequest, ResumeThrottle, new_token, token_matches
from stream_server.hub.fair_share import FairShare
from stream_server.hub.live_sessions import OUT_QUEUE_FRAMES, CloseReason, Outgoing, SessionLink
from stream_server.hub.ports import SessionHost
from stream_server.monitoring.metrics import Metrics

log = logs.get("sesame.resume")

RESUMED_ELSEWHERE = 4001  # close code of a socket whose session a resume took over


class Refused(Enum):
    """Why a resume was not honoured (the client gets a new session, or, throttled, a refusal)."""

    NOT_HELD = "not_held"  # no such session here (closed, expired, another gateway, resume off)
    BAD_TOKEN = "bad_token"
    LOG_GONE = "log_gone"  # the frames the client needs have left the replay log
    THROTTLED = "throttled"  # too many failed resumes from this peer
    OVERLOADED = "overloaded"  # no room for it among the attached sessions (core/admission.py)


class DetachHost(SessionHost, Protocol):
    """What ``Detached`` needs of the hub."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def fair(self) -> FairShare: ...

    def deadline_moved(self) -> None: ...


class Detached:
    def __init__(self, hub: DetachHost) -> None:
        self.hub = hub
        self.throttle = ResumeThrottle()
        self.grace = ExpiryBook()  # detached session -> the end of its resume grace

    def issue(self, link: SessionLink) -> str | None:
        """A new resume token for the ``ready`` about to be sent (None when resume is off); the
        previous one stops working."""
        if link.log.limit == 0:
            return None
        token, link.resume_digest = new_token()
        return token

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
        self.hub.fair.detached(link)  # no new audio; the detached cap (core/admission.py)

    def next_deadline(self) -> float | None:
        return self.grace.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Close the detached sessions whose grace ended (a resume drops a session's deadline, a
        new detach sets a new one, so a session found still detached here is this deadline's)."""
        for session_id in self.grace.handle_timer(now):
            link = self.hub.sessions.get(session_id)
            if link is not None and link.detached and not link.closed:
                self.hub.close_session(link, CloseReason.RESUME_EXPIRED)

    def resume(self, wanted: ResumeRequest, peer: str) -> SessionLink | Refused:
        """The session with frames ``heard``... queued for the new socket, or why not."""
        now = self.hub.clock()
        session_id, heard = wanted.session_id, wanted.heard
        if not self.throttle.allowed(peer, now):
            self.hub.metrics.bad_input.labels("websocket", "resume_throttled").inc()
            return Refused.THROTTLED
        link = self.hub.sessions.get(session_id)
        if link is None or link.closed or link.log.limit == 0:
            return Refused.NOT_HELD
        if not token_matches(link.resume_digest, wanted.token):
            self.throttle.failed(peer, now)
            self.hub.metrics.bad_input.labels("websocket", "bad_resume_token").inc()
            log.warning("resume_refused", session_id=session_id, reason=Refused.BAD_TOKEN.value, peer=peer)
            return Refused.BAD_TOKEN
        replay = link.log.since(heard)
        if replay is None:
            log.info(
                "resume_refused", session_id=session_id, reason="log_gone", heard=heard, first=link.log.first
            )
            return Refused.LOG_GONE
        if not self.hub.fair.reattached(link):  # the attached pool is full (core/admission.py)
            log.info("resume_refused", session_id=session_id, reason=Refused.OVERLOADED.value, heard=heard)
            return Refused.OVERLOADED
        if not link.detached:
            log.info("session_taken_over", session_id=session_id)  # the old socket closes (4001)
        link.end()  # the writer of the old socket stops
        queue: asyncio.Queue[Outgoing] = asyncio.Queue(OUT_QUEUE_FRAMES)
        for item in replay:
            queue.put_nowait(item)
        link.out = queue
        link.send_now = None  # the old socket's; the new one sets its own after its ready
        link.attachment += 1
        link.detached = False
        self.grace.drop(session_id)
        log.info("session_resumed", session_id=session_id, heard=heard, replayed=len(replay))
        return link
