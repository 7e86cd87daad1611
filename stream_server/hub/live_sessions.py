"""The live sessions: admission (the fair-share core, ``core/admission.py``), and each session's
bounded outgoing queue (back-pressure).

Each session has a bounded queue of what is to be sent to its client (``OUT_QUEUE_FRAMES``): typed
server messages, binary audio frames, and ``None`` when the session is closing. A client that does
not read fills it; ``push`` then says so, and the hub closes the session with ``client_too_slow``
(counted in ``sesame_dropped_total{what="client_too_slow"}``) rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from broker.errors import Overloaded
from broker.wire import Message
from stream_server.config import GatewayConfig
from stream_server.core.actions import Sentence
from stream_server.core.admission import Admission, AdmissionLimits, NoRoom
from stream_server.core.dispatch_order import DispatchOrder
from stream_server.core.expiry import ExpiryBook
from stream_server.core.resume import ReplayLog
from stream_server.core.session import SessionCore
from stream_server.core.session_outs import Out

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
    DETACHED_EVICTED = "detached_evicted"  # detached, and its room was needed (core/admission.py)


@dataclass(eq=False)
class SessionLink:
    core: SessionCore
    client: str = "local"  # whose share it counts against (core/admission.py)
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
    # Sentences being encoded off the loop (mp3, ogg, ...) and what the session sent after them.
    waiting: deque[asyncio.Future[bytes] | Message | bytes] = field(default_factory=deque)
    # Writes an item to the socket now when nothing waits ahead of it (http/send_now.py); False:
    # it goes to ``out`` for the writer task.
    send_now: Callable[[Message | bytes], bool] | None = None

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
        if self.send_now is not None and self.send_now(item):
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
    lookahead_s: float


@dataclass(frozen=True, slots=True)
class Opened:
    link: SessionLink
    evicted: list[SessionLink]  # detached sessions whose room it took: the hub closes them


class Sessions:
    @classmethod
    def from_config(cls, c: GatewayConfig) -> Sessions:
        settings = SessionSettings(
            c.max_sessions, c.max_length, c.first_chunk_min_chars, c.lookahead, c.lookahead_s
        )
        limits = AdmissionLimits(
            c.max_sessions, c.max_detached, c.client_max_sessions, c.client_max_in_flight, c.retry_after_s
        )
        return cls(settings, limits)

    def __init__(self, settings: SessionSettings, limits: AdmissionLimits | None = None) -> None:
        self.settings = settings
        self.admission = Admission(limits or AdmissionLimits(max_sessions=settings.max_sessions))
        self._live: dict[str, SessionLink] = {}
        self.dispatch_order = DispatchOrder()
        # Each session's dispatch_at, kept by its core: the deadline task's every look is then not a
        # scan of all sessions (issue 20).
        self.dispatch_times = ExpiryBook()

    def open(
        self,
        voice: str,
        sample_rate: int,
        fmt: str,
        session_id: str | None = None,
        resume_frames: int = 0,
        *,
        client: str | None = None,
        now: float = 0.0,
    ) -> Opened:
        """A new session of ``client``; ``session_id`` when the client chose it (MQTT-only),
        ``resume_frames`` the frames kept for a resume (websocket). ``Overloaded`` when there is
        no room for it."""
        session_id = session_id or uuid.uuid4().hex[:20]
        client = client or f"session:{session_id}"  # no identity (MQTT-only): a share of its own
        decision = self.admission.open(session_id, client, now)
        if isinstance(decision, NoRoom):
            raise Overloaded(decision.message, decision.retry_after_s)
        evicted = [link for sid in decision.evict if (link := self._live.get(sid)) is not None]
        core = SessionCore(
            session_id,
            voice=voice,
            sample_rate=sample_rate,
            fmt=fmt,
            max_length=self.settings.max_length,
            first_chunk_min_chars=self.settings.first_chunk_min_chars,
            lookahead=self.settings.lookahead,
            lookahead_s=self.settings.lookahead_s,
            dispatch_times=self.dispatch_times,
        )
        link = SessionLink(core, client=client, log=ReplayLog(resume_frames))
        self._live[session_id] = link
        return Opened(link, evicted)

    def close(self, link: SessionLink, reason: CloseReason) -> list[tuple[str, int]] | None:
        """Forget the session; None if it was already closed, else the sentences of the client's
        other sessions that its share lets go now."""
        if self._live.pop(link.session_id, None) is None:
            return None
        self.dispatch_order.forget(link.session_id)
        self.dispatch_times.drop(link.session_id)
        link.closed = True
        link.close_reason = link.close_reason or reason
        return self.admission.close(link.session_id)

    def next_deadline(self) -> float | None:
        """The earliest time a session's lookahead lets its next sentence go (core/lookahead.py)."""
        return self.dispatch_times.next_deadline()

    def wake(self, now: float) -> list[tuple[SessionLink, list[Out]]]:
        """The sessions whose lookahead lets a sentence go by ``now``, in dispatch order (the earliest
        need first, then round robin: core/dispatch_order.py), each with what it sends now."""
        ready: list[tuple[SessionLink, Sentence]] = []
        for session_id in self.dispatch_times.handle_timer(now):
            if (link := self._live.get(session_id)) is None:
                continue
            if (waiting := link.core.waiting(now)) is not None:
                ready.append((link, waiting))
            else:
                link.core.dispatch_at = None
        ordered = self.dispatch_order.order(ready, lambda r: r[1], now)
        return [(link, link.core.wake(now)) for link, _ in ordered]

    def get(self, session_id: str) -> SessionLink | None:
        return self._live.get(session_id)

    def all(self) -> list[SessionLink]:
        """The live sessions (a copy: closing one while iterating is safe)."""
        return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)
