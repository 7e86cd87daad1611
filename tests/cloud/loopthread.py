"""Running a stand-in server on its own event loop in a thread.

The stand-ins must keep serving while a test's own loop is busy (pytest-asyncio gives each test its
own loop, fixtures another), and a server that goes silent must not block anyone: so each server
gets a private loop in a daemon thread. ``start`` returns once the server listens; ``stop`` closes
it and cancels every connection handler still running.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

STARTUP_TIMEOUT = 10.0


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._error: list[BaseException] = []
        self._stopping: asyncio.Event | None = None
        self._main: Future[None] | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self, serve: Callable[[asyncio.Event], Awaitable[Any]]) -> None:
        """Run ``serve(stopping)`` in the thread: it listens, calls ``mark_ready``, awaits ``stopping``."""

        async def main() -> None:
            self._stopping = asyncio.Event()
            try:
                await serve(self._stopping)
            except BaseException as exc:
                self._error.append(exc)
                self._ready.set()
                raise

        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(main(), self.loop)
        if not self._ready.wait(STARTUP_TIMEOUT):
            raise RuntimeError(f"{self.name} did not start")
        if self._error:
            raise RuntimeError(f"{self.name} failed to start") from self._error[0]

    def mark_ready(self) -> None:
        self._ready.set()

    def stop(self) -> None:
        if self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)
        try:
            if self._main is not None:
                self._main.result(STARTUP_TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STARTUP_TIMEOUT)


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Blackhole:
    """A loopback port whose connects hang: it listens, never accepts, and its backlog is full.

    Linux drops further SYNs once the accept queue is full, so a client sees no answer at all,
    the way a firewalled or dead host looks: what a connect timeout is for.
    """

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(0)
        self.port = int(self._server.getsockname()[1])
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=STARTUP_TIMEOUT)

    def close(self) -> None:
        self._filler.close()
        self._server.close()
