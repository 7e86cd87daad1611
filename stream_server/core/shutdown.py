"""Draining a gateway that is being replaced: when to tell each session to reconnect. Pure.

On SIGTERM the gateway stops accepting (its listening socket is shared with its successor, see
``listen.py``) and drains: each live session is left alone while it has a turn in flight, and is
told to reconnect (a ``reconnect`` message, then close code 1012 "service restart") once it is
idle and has been quiet for ``quiet_s``, or at ``timeout_s`` at the latest. The quiet time covers a
client that connected just before the switch and is about to send its first turn: it is served
here rather than cut. ``DrainCore`` is fed sessions' activity with ``now`` and answers the session
ids to close; ``next_deadline()`` says when to look again. The drain is over (``over(now)``, at
``ends_at()``) when no session is left once a just-accepted connection had ``quiet_s`` to become
one, ``grace_s`` after the last session was told, or at ``timeout_s + grace_s`` whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Session:
    busy: bool
    last_active: float
    told: bool = False


@dataclass(slots=True)
class DrainCore:
    timeout_s: float = 30.0
    quiet_s: float = 1.0
    grace_s: float = 2.0
    started_at: float | None = None
    last_told_at: float | None = None
    sessions: dict[str, _Session] = field(default_factory=dict)

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    @property
    def finished(self) -> bool:
        """Draining, and every session has been told (or there were none)."""
        return self.draining and all(s.told for s in self.sessions.values())

    def start(self, now: float) -> list[str]:
        if self.started_at is None:
            self.started_at = now
        return self.tick(now)

    def activity(self, session_id: str, busy: bool, now: float) -> None:
        """A session opened, or its turn state changed (text arrived, a turn ended)."""
        s = self.sessions.get(session_id)
        if s is None:
            self.sessions[session_id] = _Session(busy, now)
        else:
            s.busy, s.last_active = busy, now

    def closed(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def tick(self, now: float) -> list[str]:
        """Sessions to tell to reconnect now (each once)."""
        if self.started_at is None:
            return []
        overdue = now >= self.started_at + self.timeout_s
        out = []
        for sid, s in self.sessions.items():
            if not s.told and (overdue or (not s.busy and now >= s.last_active + self.quiet_s)):
                s.told = True
                out.append(sid)
        if out:
            self.last_told_at = now
        return out

    def next_deadline(self) -> float | None:
        if self.started_at is None:
            return None
        waiting = [s for s in self.sessions.values() if not s.told]
        if not waiting:
            return None
        quiet = [s.last_active + self.quiet_s for s in waiting if not s.busy]
        return min([self.started_at + self.timeout_s, *quiet])

    def ends_at(self) -> float | None:
        """When the drain is over unless a session comes or goes first (None: not draining)."""
        if self.started_at is None:
            return None
        give_up = self.started_at + self.timeout_s + self.grace_s
        if not self.sessions:
            return min(give_up, self.started_at + self.quiet_s)
        if self.finished and self.last_told_at is not None:
            return min(give_up, self.last_told_at + self.grace_s)
        return give_up

    def over(self, now: float) -> bool:
        end = self.ends_at()
        return end is not None and now >= end
