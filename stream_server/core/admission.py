"""Fair share: who may open a session, and whose sentences may go to the engines now. Pure.

Two pools of sessions. *Attached* sessions have a client on the other end: at most
``max_sessions`` of them, and a new one is never refused because of detached ones. *Detached*
sessions lost their socket and wait for a resume (docs/protocol.md): at most ``max_detached`` of
them, and together with the attached ones at most ``max_sessions``; whenever either bound is
passed, the oldest detached session is closed to make room (``Admitted.evict``,
``detach``'s answer). A detached session makes no new audio: its sentences beyond those already
in flight are held until it is resumed.

Per client (its address, or its token's identity where tokens identify clients): at most
``client_sessions`` open sessions (when a client is at its quota, its own oldest detached
session makes room; with none, the open is refused) and at most ``client_in_flight`` sentences
being synthesized at once; further sentences wait here, in order, and go as the client's
earlier ones finish (``finished``, ``closed``). Refusals are ``overloaded`` with a
``retry_after_s``.

The adapter (``hub/live_sessions.py``) feeds it ``open``/``detach``/``attach``/``close`` and
``dispatch``/``finished``, and carries out what they return: sessions to close, sentences to
submit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_sessions: int = 1000  # SESAME_MAX_SESSIONS: attached sessions
    max_detached: int = 100  # SESAME_MAX_DETACHED
    client_sessions: int = 16  # SESAME_CLIENT_MAX_SESSIONS
    client_in_flight: int = 3  # SESAME_CLIENT_MAX_IN_FLIGHT: sentences being synthesized
    retry_after_s: float = 2.0  # SESAME_RETRY_AFTER (ms in env): what a refusal suggests


@dataclass(frozen=True, slots=True)
class Admitted:
    evict: tuple[str, ...] = ()  # detached sessions to close first, oldest first


@dataclass(frozen=True, slots=True)
class NoRoom:
    message: str
    retry_after_s: float
    code: str = "overloaded"


@dataclass(frozen=True, slots=True)
class DetachPlan:
    evict: tuple[str, ...] = ()  # detached sessions to close, oldest first
    pull_back: tuple[int, ...] = ()  # the detached session's sentences to stop at the engines


@dataclass(slots=True)
class _Held:
    """A session as admission sees it: whose it is, since when detached, its sentences."""

    client: str
    opened_at: float
    detached_at: float | None = None
    in_flight: set[int] = field(default_factory=set)  # seqs sent to the engines, not finished
    held: deque[int] = field(default_factory=deque)  # seqs waiting for the client's quota


class Admission:
    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._sessions: dict[str, _Held] = {}
        self._detached: dict[str, float] = {}  # insertion order = detach order: oldest first
        self._clients: dict[str, list[str]] = {}  # client -> its session ids, oldest first

    # ---- sessions -------------------------------------------------------------------------------

    def open(self, session_id: str, client: str, now: float) -> Admitted | NoRoom:
        """Admit a new attached session (or refuse it); ``evict`` are detached sessions to close
        first (they are forgotten here already)."""
        lim = self.limits
        if self.attached_count() >= lim.max_sessions:
            return NoRoom("the gateway is at its session limit", lim.retry_after_s)
        evict: list[str] = []
        mine = self._clients.get(client, [])
        if len(mine) >= lim.client_sessions:
            own = next((s for s in self._detached if self._sessions[s].client == client), None)
            if own is None:
                return NoRoom(
                    f"this client has {len(mine)} sessions open (the quota is {lim.client_sessions})",
                    lim.retry_after_s,
                )
            evict.append(own)
            self._forget(own)
        while len(self._sessions) >= lim.max_sessions and self._detached:
            evict.append(self._oldest_detached())
        self._sessions[session_id] = _Held(client, now)
        self._clients.setdefault(client, []).append(session_id)
        return Admitted(tuple(evict))

    def detach(self, session_id: str, now: float, speaking: Collection[int] = ()) -> DetachPlan:
        """Its socket dropped: detached from now. It makes no new audio: of its sentences in flight
        only the first one whose audio is being made (in ``speaking``) goes on; the others go back
        to wait (``pull_back``, to be cancelled at the engines). The oldest detached sessions
        beyond the detached cap are to be closed (possibly this one)."""
        s = self._sessions.get(session_id)
        if s is None or s.detached_at is not None:
            return DetachPlan()
        s.detached_at = now
        self._detached[session_id] = now
        going = min((q for q in s.in_flight if q in speaking), default=None)
        pulled = tuple(sorted(q for q in s.in_flight if q != going))
        s.in_flight.difference_update(pulled)
        s.held.extendleft(reversed(pulled))
        evict: list[str] = []
        while len(self._detached) > self.limits.max_detached:
            evict.append(self._oldest_detached())
        return DetachPlan(tuple(evict), pulled if session_id not in evict else ())

    def attach(self, session_id: str) -> tuple[bool, list[tuple[str, int]]]:
        """A client resumes it: (admitted, its held sentences that may go now). NoRoom when the
        attached pool is full (the session stays detached)."""
        s = self._sessions.get(session_id)
        if s is None:
            return False, []
        if s.detached_at is None:
            return True, []
        if self.attached_count() >= self.limits.max_sessions:
            return False, []
        s.detached_at = None
        del self._detached[session_id]
        return True, self._release_all(s.client)

    def close(self, session_id: str) -> list[tuple[str, int]]:
        """The session is gone; (session, seq) of the client's other sessions that may go now."""
        s = self._sessions.get(session_id)
        if s is None:
            return []
        self._forget(session_id)
        return self._release_all(s.client)

    def is_detached(self, session_id: str) -> bool:
        s = self._sessions.get(session_id)
        return s is not None and s.detached_at is not None

    def attached_count(self) -> int:
        return len(self._sessions) - len(self._detached)

    def detached_count(self) -> int:
        return len(self._detached)

    def sessions_of(self, client: str) -> int:
        return len(self._clients.get(client, ()))

    # ---- sentences ------------------------------------------------------------------------------

    def dispatch(self, session_id: str, seq: int) -> bool:
        """May this sentence go to the engines now? False: it is held (the client's quota is full,
        or the session is detached) and comes back from ``finished``/``attach``/``close``."""
        s = self._sessions.get(session_id)
        if s is None:
            return True  # not admitted here (a phrase preload): not a client's work
        room = self._client_in_flight(s.client) < self.limits.client_in_flight
        if s.detached_at is None and not s.held and room:
            s.in_flight.add(seq)
            return True
        s.held.append(seq)
        return False

    def finished(self, session_id: str, seq: int) -> list[tuple[str, int]]:
        """A sentence left the engines (done, or no voice could speak it); (session, seq) of the
        client's held sentences that may go now."""
        s = self._sessions.get(session_id)
        if s is None:
            return []
        s.in_flight.discard(seq)
        s.held = deque(q for q in s.held if q != seq)
        return self._release_all(s.client)

    def cancelled(self, session_id: str) -> list[tuple[str, int]]:
        """Barge-in: the session's sentences are gone; what the client's other sessions may send."""
        s = self._sessions.get(session_id)
        if s is None:
            return []
        s.in_flight.clear()
        s.held.clear()
        return self._release_all(s.client)

    def in_flight(self, client: str) -> int:
        return self._client_in_flight(client)

    # ---- internals ------------------------------------------------------------------------------

    def _client_in_flight(self, client: str) -> int:
        return sum(len(self._sessions[sid].in_flight) for sid in self._clients.get(client, ()))

    def _release_all(self, client: str) -> list[tuple[str, int]]:
        """Held sentences of the client's attached sessions while its share allows: one per
        session per round, the session with the fewest in flight first (none starves another)."""
        out: list[tuple[str, int]] = []
        ids = [sid for sid in self._clients.get(client, ()) if self._sessions[sid].detached_at is None]
        room = self.limits.client_in_flight - self._client_in_flight(client)
        while room > 0:
            waiting = sorted(
                (sid for sid in ids if self._sessions[sid].held),
                key=lambda sid: len(self._sessions[sid].in_flight),
            )
            if not waiting:
                break
            for sid in waiting[:room]:
                s = self._sessions[sid]
                seq = s.held.popleft()
                s.in_flight.add(seq)
                out.append((sid, seq))
                room -= 1
        return out

    def _oldest_detached(self) -> str:
        oldest = next(iter(self._detached))
        self._forget(oldest)
        return oldest

    def _forget(self, session_id: str) -> None:
        s = self._sessions.pop(session_id)
        self._detached.pop(session_id, None)
        ids = self._clients[s.client]
        ids.remove(session_id)
        if not ids:
            del self._clients[s.client]
