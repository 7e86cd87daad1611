"""The drain's adapter: feeds ``DrainCore`` the live sessions, carries out its answers.

``Drainer.start()`` is called when the gateway is told to stop (SIGTERM). From then on the hub's
one deadline task drives it (``next_deadline()``/``handle_timer(now)``, as every core of the hub):
it looks at the sessions whenever something changed (``poke()``: a client frame arrived, a turn
ended, a session closed) or the core's next deadline passes, tells the sessions the core names to
reconnect (a ``reconnect`` message, then close code 1012), and sets ``over`` when every session has
been told and has gone, or ``grace_s`` after the last was told. It has no task or timer of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from broker import logs
from stream_server.core.shutdown import DrainCore

log = logs.get("sesame.gateway")


class DrainTarget(Protocol):
    def live_sessions(self) -> list[tuple[str, bool]]:
        """(session_id, busy) for each live websocket session; busy: a turn is in flight."""
        ...

    def tell_reconnect(self, session_id: str) -> None:
        """Send ``reconnect`` and close the session's websocket with 1012."""
        ...


class Drainer:
    def __init__(
        self,
        target: DrainTarget,
        timeout_s: float,
        *,
        clock: Callable[[], float],
        wake: Callable[[], None],
        quiet_s: float = 1.0,
        grace_s: float = 2.0,
    ) -> None:
        self.target = target
        self.core = DrainCore(timeout_s=timeout_s, quiet_s=quiet_s, grace_s=grace_s)
        self.clock = clock
        self._wake = wake  # the deadline task looks at next_deadline() again
        self._poked_at: float | None = None
        self.over = asyncio.Event()  # the drain is done: the gateway may stop

    @property
    def draining(self) -> bool:
        return self.core.draining

    def start(self) -> None:
        now = self.clock()
        self._observe(now)
        self._tell(self.core.start(now))
        log.info("gateway_draining", sessions=len(self.core.sessions), timeout_s=self.core.timeout_s)
        self._wake()

    def poke(self) -> None:
        """Something changed: look at the sessions at once (on the deadline task)."""
        if self.draining and self._poked_at is None:
            self._poked_at = self.clock()
            self._wake()

    def next_deadline(self) -> float | None:
        if not self.draining or self.over.is_set():
            return None
        deadlines = (self._poked_at, self.core.next_deadline(), self.core.ends_at())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        if not self.draining or self.over.is_set():
            return
        self._poked_at = None
        self._observe(now)
        if self._tell(self.core.tick(now)):
            self._observe(now)  # told sessions close at once
        if self.core.over(now):
            log.info("gateway_drained")
            self.over.set()

    def _tell(self, session_ids: list[str]) -> bool:
        for sid in session_ids:
            log.info("session_told_to_reconnect", session_id=sid)
            self.target.tell_reconnect(sid)
        return bool(session_ids)

    def _observe(self, now: float) -> None:
        live = self.target.live_sessions()
        ids = {sid for sid, _ in live}
        for sid in [sid for sid in self.core.sessions if sid not in ids]:
            self.core.closed(sid)
        for sid, busy in live:  # activity: a new session, or its turn began or ended
            known = self.core.sessions.get(sid)
            if known is None or known.busy != busy:
                self.core.activity(sid, busy, now)
