"""The drain adapter with a plain in-test session table, driven as the hub drives it: by a
``DeadlineLoop`` over its ``next_deadline()``/``handle_timer(now)``: who is told, and when it is over."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from broker.deadlines import DeadlineLoop
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


class Driven:
    """The drainer and a deadline loop driving it (the hub's deadline task in the gateway)."""

    def __init__(self, table: Table, timeout_s: float, **kw: float) -> None:
        self.loop = DeadlineLoop(self.next_deadline, self.handle_timer, time.monotonic)
        self.drainer = Drainer(table, timeout_s, clock=time.monotonic, wake=self.loop.wake, **kw)

    def next_deadline(self) -> float | None:
        return self.drainer.next_deadline()

    def handle_timer(self, now: float) -> None:
        self.drainer.handle_timer(now)


@contextlib.asynccontextmanager
async def driven(table: Table, timeout_s: float, **kw: float) -> AsyncIterator[Drainer]:
    d = Driven(table, timeout_s, **kw)
    task = asyncio.create_task(d.loop.run())
    try:
        yield d.drainer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_idle_sessions_go_after_quiet_busy_ones_after_their_turn() -> None:
    table = Table({"idle": False, "busy": True})
    async with driven(table, timeout_s=10 * T, quiet_s=0.0) as drainer:
        drainer.start()
        async with asyncio.timeout(T):
            await table.changed.wait()
        assert table.told == ["idle"]
        table.sessions["busy"] = False  # the turn ended
        drainer.poke()
        async with asyncio.timeout(T):
            await drainer.over.wait()
        assert table.told == ["idle", "busy"]


async def test_an_idle_session_is_told_once_it_has_been_quiet() -> None:
    table = Table({"idle": False})
    async with driven(table, timeout_s=10 * T, quiet_s=0.05) as drainer:
        drainer.start()
        assert table.told == []  # it may be about to speak
        async with asyncio.timeout(T):  # well before the timeout: looking again does not restart its quiet
            await drainer.over.wait()
        assert table.told == ["idle"]


async def test_no_sessions_is_over_after_the_quiet_time() -> None:
    async with driven(Table({}), timeout_s=10 * T, quiet_s=0.05) as drainer:
        drainer.start()
        async with asyncio.timeout(T):
            await drainer.over.wait()
        assert drainer.draining


async def test_the_timeout_tells_a_session_that_never_finishes() -> None:
    table = Table({"forever": True})
    async with driven(table, timeout_s=0.2, grace_s=0.1) as drainer:
        drainer.start()
        async with asyncio.timeout(2 * T):
            await drainer.over.wait()
        assert table.told == ["forever"]


def test_not_draining_asks_for_no_wake_up() -> None:
    drainer = Drainer(Table({"a": True}), 1.0, clock=time.monotonic, wake=lambda: None)
    drainer.poke()
    assert drainer.next_deadline() is None
    drainer.handle_timer(time.monotonic())
    assert not drainer.over.is_set()
