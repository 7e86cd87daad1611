"""The drain adapter with a plain in-test session table: who is told, and that it returns."""

from __future__ import annotations

import asyncio

from stream_server.hub.shutdown import Drainer
from tests.conftest import T


class Table:
    def __init__(self, sessions: dict[str, bool]) -> None:
        self.sessions = sessions
        self.told: list[str] = []
        self.changed = asyncio.Event()

    def live_sessions(self) -> list[tuple[str, bool]]:
        return list(self.sessions.items())

    def tell_reconnect(self, session_id: str) -> None:
        self.told.append(session_id)
        del self.sessions[session_id]  # the websocket closes
        self.changed.set()


async def test_idle_sessions_go_at_once_busy_ones_after_their_turn() -> None:
    table = Table({"idle": False, "busy": True})
    drainer = Drainer(table, timeout_s=10 * T, quiet_s=0.0)
    run = asyncio.create_task(drainer.run())
    async with asyncio.timeout(T):
        await table.changed.wait()
    assert table.told == ["idle"]
    table.sessions["busy"] = False  # the turn ended
    drainer.poke()
    async with asyncio.timeout(T):
        await run
    assert table.told == ["idle", "busy"]


async def test_no_sessions_returns_at_once() -> None:
    drainer = Drainer(Table({}), timeout_s=10 * T)
    async with asyncio.timeout(T):
        await drainer.run()
    assert drainer.draining


async def test_the_timeout_tells_a_session_that_never_finishes() -> None:
    table = Table({"forever": True})
    async with asyncio.timeout(2 * T):
        await Drainer(table, timeout_s=0.2, grace_s=0.1).run()
    assert table.told == ["forever"]
