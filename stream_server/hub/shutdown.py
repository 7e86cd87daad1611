"""The drain's asyncio adapter: feeds ``DrainCore`` the live sessions, carries out its answers.

``Drainer.run()`` is started when the gateway is told to stop (SIGTERM): it looks at the sessions
whenever something changed (``poke()``: a client frame arrived, a turn ended, a session closed) or
the core's next deadline passes, tells the sessions the core names to reconnect (a ``reconnect``
message, then close code 1012), and returns when every session has been told and has gone, or
``grace_s`` after the last was told. Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self, target: DrainTarget, timeout_s: float, quiet_s: float = 1.0, grace_s: float = 2.0
    ) -> None:
        self.target = target
        self.core = DrainCore(timeout_s=timeout_s, quiet_s=quiet_s)
        self.grace_s = grace_s
        self._changed = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self.core.draining

    def poke(self) -> None:
        self._changed.set()

    def _observe(self, now: float) -> int:
        live = self.target.live_sessions()
        ids = {sid for sid, _ in live}
        for sid in [sid for sid in self.core.sessions if sid not in ids]:
            self.core.closed(sid)
        for sid, busy in live:
            self.core.activity(sid, busy, now)
        return len(live)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._observe(now)
        told = self.core.start(now)
        give_up_at = now + self.core.timeout_s + self.grace_s
        log.info("gateway_draining", sessions=len(self.core.sessions), timeout_s=self.core.timeout_s)
        while True:
            for sid in told:
                log.info("session_told_to_reconnect", session_id=sid)
                self.target.tell_reconnect(sid)
            told = []
            self._changed.clear()
            live = self._observe(loop.time())
            # A connection accepted just before the listener closed gets quiet_s to become a session.
            settled = loop.time() >= now + self.core.quiet_s
            if (live == 0 and settled) or loop.time() >= give_up_at:
                break
            if live == 0:
                await self._wait(now + self.core.quiet_s)
                continue
            told = self.core.tick(loop.time())
            if told:
                continue
            deadline = self.core.next_deadline()
            if deadline is None:  # everyone told; give them grace_s to go
                deadline = loop.time() + self.grace_s
                if not await self._wait(min(deadline, give_up_at)):
                    break
                continue
            await self._wait(min(deadline, give_up_at))
        log.info("gateway_drained")

    async def _wait(self, deadline: float) -> bool:
        """Wait for a change or the deadline; True when something changed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._changed.wait()
                return True
        return False
