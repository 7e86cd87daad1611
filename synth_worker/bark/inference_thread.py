"""One dedicated thread for blocking inference calls, each awaited from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class InferenceThread:
    """One daemon thread that runs blocking calls in order; each call is awaited from the event loop.

    A daemon thread (not a ThreadPoolExecutor, whose threads are joined at exit) so that a worker
    told to stop while a model is still loading can exit.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]] | None
        ]
        self._calls = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
            self._thread.start()
        context = contextvars.copy_context()  # the caller's bound log fields (worker_id, job_id)
        self._calls.put((lambda: context.run(fn), loop, future))
        return await future

    def close(self) -> None:
        self._calls.put(None)

    def _main(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, loop, future = item
            try:
                result = fn()
            except BaseException as exc:
                self._deliver(loop, future, None, exc)
            else:
                self._deliver(loop, future, result, None)

    @staticmethod
    def _deliver(
        loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, exc: BaseException | None
    ) -> None:
        def settle() -> None:
            if future.done():
                return  # the caller gave up waiting (cancelled)
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(settle)
