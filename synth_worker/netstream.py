"""Relaying a network audio stream to an engine's caller, with the cancel token honoured while waiting.

A cloud engine's network side (an HTTP body, websocket messages) runs in its own task: its
deadlines (first byte, stall) are ``asyncio.timeout`` scopes inside that one task, so a read is
never abandoned half-way by a timer in another task. The caller's side waits on a bounded queue in
short slices and checks the ``CancelToken`` (a ``threading.Event``, set from any thread) between
them, so a barge-in stops a stream within ``poll_s`` even while the server is silent. Leaving the
relay for any reason (end, error, cancel, the caller closing the generator) cancels the network
task, which closes its connection.

Items are handed over in order; an exception raised by the source is re-raised in the caller's
task after the items before it. The queue is bounded, so a slow consumer slows the network reads
(TCP flow control) instead of buffering without limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Final, TypeVar

from broker.errors import ConfigError

from .engine import CancelToken

T = TypeVar("T")


def check_timeouts(engine: str, **timeouts_s: float) -> None:
    """A cloud engine's timeouts must be positive: raise ConfigError naming the first that is not."""
    for label, value in timeouts_s.items():
        if not value > 0:
            raise ConfigError(f"{engine} {label} must be positive, got {value}")


class _End:
    pass


_END: Final = _End()


async def relay(
    source: AsyncGenerator[T, None],
    cancel: CancelToken,
    *,
    name: str,
    poll_s: float = 0.02,
    max_items: int = 64,
) -> AsyncGenerator[T, None]:
    queue: asyncio.Queue[T | _End | Exception] = asyncio.Queue(max_items)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except Exception as exc:  # handed over and raised in the caller's task
            await queue.put(exc)
        else:
            await queue.put(_END)
        finally:
            await source.aclose()  # closes the connection when this task is cancelled mid-stream

    failure: BaseException | None = None
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(pump(), name=name)
        try:
            while not isinstance(item := await _take(queue, cancel, poll_s), _End):
                yield item
        except BaseException as exc:  # raised below, once the pump is stopped (not as a group)
            failure = exc
        finally:
            task.cancel()
    if failure is not None:
        raise failure


async def _take(queue: asyncio.Queue[T | _End | Exception], cancel: CancelToken, poll_s: float) -> T | _End:
    """The next item, in short waits that check the cancel token; the source's error is raised."""
    while True:
        cancel.check("synthesis cancelled")
        try:
            async with asyncio.timeout(poll_s):
                item = await queue.get()
        except TimeoutError:
            continue
        if isinstance(item, Exception):
            raise item
        return item
