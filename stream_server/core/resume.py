"""Resuming a websocket session after a reconnect (docs/protocol.md, "Reconnect and resume"). Pure.

The gateway numbers every frame it sends a session's client after ``ready`` (0, 1, 2, ...; JSON and
binary alike) and keeps the last ``limit`` of them in a ``ReplayLog``. A client that lost its socket
reconnects with ``?session_id=ID&resume_token=T&heard=N`` (N = frames it received; T = the
``resume_token`` of the last ``ready`` it got). The gateway that holds the
session sends frame N onward from the log and goes on live: no frame is lost or sent twice,
including a sentence that was half sent. It also tells the client how many client frames it has
(``received``), so the client resends the frames the dropped socket swallowed.

A session whose socket dropped is kept, detached, for ``grace_s``; its sentences go on being made
and logged meanwhile. A resume fails (the client gets a fresh session) when the gateway does not
hold the session, its grace has run out, or the frames the client needs have left the log.

A session id is not a secret (it is in claims, MQTT topics and logs); the resume token is. Every
``ready`` of a resumable session carries a new one (``TOKEN_BYTES`` random bytes from ``secrets``);
the gateway keeps only its SHA-256 and compares in constant time (``token_matches``). Without the
right token a resume gets a new session and not one frame of the old one, and the failure counts
against the peer (``ResumeThrottle``): past ``max_failures`` in ``window_s`` its resumes are refused
until the window has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

TOKEN_BYTES = 24  # 192 bits

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


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    session_id: str
    heard: int
    token: str  # may be empty or wrong: only ``token_matches`` says

    def __repr__(self) -> str:  # never the token
        return f"ResumeRequest(session_id={self.session_id!r}, heard={self.heard})"


def parse_resume(session_id: str | None, heard: str | None, token: str | None) -> ResumeRequest | None:
    """The query parameters of a resume, or None when this is no (valid) resume request."""
    if not session_id or heard is None or not heard.isdigit() or len(heard) > 12:
        return None
    if len(session_id) > 64 or not session_id.isalnum():
        return None
    return ResumeRequest(session_id, int(heard), (token or "")[:256])


def new_token() -> tuple[str, bytes]:
    """A fresh resume token for the client, and the digest the gateway keeps of it."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def token_matches(kept: bytes | None, token: str) -> bool:
    """Constant-time: whether ``token`` is the one whose digest was kept."""
    if kept is None:
        return False
    return hmac.compare_digest(kept, token_digest(token))


class ResumeThrottle:
    """Failed resumes per peer: past ``max_failures`` within ``window_s`` its resumes are refused."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0, max_peers: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_peers = max_peers
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, peer: str, now: float) -> deque[float]:
        times = self._failures.get(peer, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def allowed(self, peer: str, now: float) -> bool:
        times = self._recent(peer, now)
        if not times:
            self._failures.pop(peer, None)
        return len(times) < self.max_failures

    def failed(self, peer: str, now: float) -> None:
        if peer not in self._failures and len(self._failures) >= self.max_peers:
            # Forget the peers whose failures are all old; if none are, the oldest entry.
            for other in [p for p in self._failures if not self._recent(p, now)]:
                del self._failures[other]
            if len(self._failures) >= self.max_peers:
                del self._failures[next(iter(self._failures))]
        times = self._recent(peer, now)
        times.append(now)
        self._failures[peer] = times
