"""The live sessions: admission, and each session's bounded outgoing queue (back-pressure).

Each session has a bounded queue of what is to be sent to its client (``OUT_QUEUE_FRAMES``): typed
server messages, binary audio frames, and ``None`` when the session is closing. A client that does
not read fills it; ``push`` then says so, and the hub closes the session with ``client_too_slow``
(counted in ``sesame_dropped_total{what="client_too_slow"}``) rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from enum import Enum

from broker.errors import ProtocolError
from broker.wire import Message
from stream_server.core.resume import ReplayLog
from stream_server.core.session import SessionCore

OUT_QUEUE_FRAMES = 4000  # ~160 s of 40 ms frames per session

Outgoing = Message | bytes | None  # None: the session is closing


class CloseReason(Enum):
    CLIENT_DISCONNECTED = "client_disconnected"
    CLIENT_TOO_SLOW = "client_too_slow"
    HTTP_DONE = "http_done"
    CLOSED = "closed"
    GATEWAY_STOPPING = "gateway_stopping"
    GATEWAY_RELOAD = "gateway_reload"  # drained: `reconnect` was sent, the websocket closes with 1012
    RESUME_EXPIRED = "resume_expired"  # its socket dropped and no client resumed it in time
    MQTT_CLOSE = "mqtt_close"  # an MQTT-only session's publisher closed it
    MQTT_IDLE = "mqtt_idle"  # an MQTT-only session's publisher fell silent
    CLAIM_LOST = "claim_lost"  # another gateway holds it (stream_server/core/claims.py)


@dataclass(eq=False)
class SessionLink:
    core: SessionCore
    out: asyncio.Queue[Outgoing] = field(default_factory=lambda: asyncio.Queue(OUT_QUEUE_FRAMES))
    closed: bool = False
    close_reason: CloseReason | None = None
    # Resume (stream_server/core/resume.py): the frames sent, the client frames received, and which
    # attachment of a socket is the current one (a resume makes a new one, with a new queue).
    log: ReplayLog[Message | bytes] = field(default_factory=lambda: ReplayLog(0))
    received: int = 0
    attachment: int = 0
    detached: bool = False  # its socket dropped: frames go to the log only, for a resume
    resume_digest: bytes | None = None  # SHA-256 of the resume token of its last ready

    @property
    def session_id(self) -> str:
        return self.core.session_id

    def push(self, item: Message | bytes) -> bool:
        """Queue ``item`` for the client; False when the queue is full (the client is too slow)."""
        if self.closed:
            return True
        if self.log.limit:
            self.log.append(item)
        if self.detached:
            return True
        try:
            self.out.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def end(self) -> None:
        """Queue the closing marker, making room for it if the queue is full."""
        try:
            self.out.put_nowait(None)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.out.get_nowait()
            self.out.put_nowait(None)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    max_sessions: int
    max_length: int
    first_chunk_min_chars: int
    lookahead: int


class Sessions:
    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._live: dict[str, SessionLink] = {}

    def open(
        self,
        voice: str,
        sample_rate: int,
        fmt: str,
        session_id: str | None = None,
        resume_frames: int = 0,
    ) -> SessionLink:
        """A new session; ``session_id`` when the client chose it (MQTT-only), ``resume_frames``
        the frames kept for a resume (websocket)."""
        if len(self._live) >= self.settings.max_sessions:
            raise ProtocolError("the gateway is at its session limit", code="overloaded")
        session_id = session_id or uuid.uuid4().hex[:20]
        core = SessionCore(
            session_id,
            voice=voice,
            sample_rate=sample_rate,
            fmt=fmt,
            max_length=self.settings.max_length,
            first_chunk_min_chars=self.settings.first_chunk_min_chars,
            lookahead=self.settings.lookahead,
        )
        link = SessionLink(core, log=ReplayLog(resume_frames))
        self._live[session_id] = link
        return link

    def close(self, link: SessionLink, reason: CloseReason) -> bool:
        """Forget the session; False if it was already closed."""
        if self._live.pop(link.session_id, None) is None:
            return False
        link.closed = True
        link.close_reason = link.close_reason or reason
        return True

    def get(self, session_id: str) -> SessionLink | None:
        return self._live.get(session_id)

    def all(self) -> list[SessionLink]:
        """The live sessions (a copy: closing one while iterating is safe)."""
        return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)
