"""The relay between a cloud engine's network task and its caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from broker.errors import EngineCancelled, EngineError
from synth_worker.engine import CancelToken
from synth_worker.netstream import relay
from tests.conftest import T


async def test_items_then_the_sources_error_in_order() -> None:
    async def source() -> AsyncGenerator[int, None]:
        yield 1
        yield 2
        raise EngineError("boom", code="upstream_error")

    got = []
    with pytest.raises(EngineError) as caught:
        async with asyncio.timeout(T):
            async for item in relay(source(), CancelToken(), name="t"):
                got.append(item)  # noqa: PERF401 (keep what came before the error)
    assert got == [1, 2]
    assert caught.value.code == "upstream_error"


async def test_cancel_while_the_source_waits_closes_the_source() -> None:
    started, closed = asyncio.Event(), asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        try:
            started.set()
            await asyncio.Event().wait()  # a server that never answers
            yield 0
        finally:
            closed.set()

    cancel = CancelToken()

    async def cancel_when_started() -> None:
        await started.wait()
        cancel.cancel()

    async with asyncio.timeout(T), asyncio.TaskGroup() as tg:
        tg.create_task(cancel_when_started())
        with pytest.raises(EngineCancelled):
            async for _ in relay(source(), cancel, name="t"):
                pass
    assert closed.is_set()


async def test_caller_leaving_early_cancels_the_network_task() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    stream = relay(source(), CancelToken(), name="t", max_items=2)
    async with asyncio.timeout(T):
        assert await anext(stream) == 0
        await stream.aclose()
        await closed.wait()
    assert closed.is_set()
