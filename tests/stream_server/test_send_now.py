"""Frames written in the call that makes them (stream_server/http/send_now.py), on the real uvicorn
websockets-sansio server, with the gateway's frame writer (http/ws_frames.py) and without it: sent
at once while the socket takes them; once the client stops reading and the transport pauses,
queued for the writer instead, and every frame reaches the client once, in order. Within a pass of
the hub (hub/send_pass.py) a socket's frames leave in one write at its end, and a ``turn_end``
queued in the pass keeps its place before the frames made after it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from broker.ws_protocol import SentenceStart, TurnEnd
from stream_server.http.send_now import SendNow, finished_now, send_frame
from stream_server.http.ws_frames import EXTENSION, FramesProtocol
from stream_server.hub.live_sessions import Outgoing
from stream_server.hub.send_pass import SendPass
from tests.conftest import T

FRAME = 64 * 1024  # a few of these fill the socket's buffers and pause the transport
FRAMES = 64


async def test_a_send_that_does_not_wait_is_finished_now() -> None:
    sent: list[str] = []

    async def send() -> None:
        sent.append("frame")

    assert finished_now(send()) and sent == ["frame"]


async def test_a_send_that_waits_is_closed_unsent() -> None:
    writable, sent, closed = asyncio.Event(), [], []

    async def send() -> None:
        try:
            await writable.wait()
        except GeneratorExit:
            closed.append(True)
            raise
        sent.append("frame")

    assert not finished_now(send())
    assert closed == [True] and sent == []


PROTOCOLS = pytest.mark.parametrize("protocol", [FramesProtocol, "websockets-sansio"], ids=["frames", "asgi"])


def sender(
    websocket: WebSocket, send_pass: SendPass
) -> tuple[SendNow, asyncio.Queue[Outgoing], asyncio.Task[None]]:
    """A socket's SendNow, its queue, and the writer task draining the queue (as routes_ws runs)."""
    queue: asyncio.Queue[Outgoing] = asyncio.Queue()
    send_now = SendNow(websocket, queue, send_pass)

    async def writer() -> None:
        while (item := await queue.get()) is not None:
            send_now.writer_holds = True
            await send_frame(websocket, item)
            send_now.writer_holds = False

    return send_now, queue, asyncio.create_task(writer())


@contextlib.asynccontextmanager
async def server(
    endpoint: Callable[[WebSocket], Awaitable[None]], ws: Any, **config: Any
) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # a client may connect at once: the kernel holds it until uvicorn accepts
    port = sock.getsockname()[1]
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    srv = uvicorn.Server(
        uvicorn.Config(app, ws=ws, ws_per_message_deflate=False, log_level="warning", **config)
    )
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, T)


def pushing(results: asyncio.Queue[tuple[int, int]]) -> Callable[[WebSocket], Awaitable[None]]:
    """An endpoint that pushes FRAMES frames as SessionLink.push does (send_now, else the queue its
    writer task drains), outside a pass; it reports how many went each way."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        send_now, queue, task = sender(websocket, SendPass())
        direct = 0
        for i in range(FRAMES):
            frame = i.to_bytes(4, "big") * (FRAME // 4)
            if send_now(frame):
                direct += 1
            else:
                queue.put_nowait(frame)
        results.put_nowait((direct, FRAMES - direct))
        queue.put_nowait(None)
        await task
        await websocket.receive()  # the client's close

    return endpoint


@PROTOCOLS
async def test_frames_go_at_once_then_queue_behind_a_paused_socket_and_arrive_once_in_order(
    protocol: Any,
) -> None:
    results: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    async with server(pushing(results), protocol) as url, connect(url, max_size=None, max_queue=1) as ws:
        ws.transport.pause_reading()  # the client stops reading: the server's transport pauses
        async with asyncio.timeout(T):
            direct, queued = await results.get()
        assert direct > 0 and queued > 0 and direct + queued == FRAMES
        ws.transport.resume_reading()
        got = []
        async with asyncio.timeout(T):
            for _ in range(FRAMES):
                frame = await ws.recv()
                assert isinstance(frame, bytes) and len(frame) == FRAME
                got.append(int.from_bytes(frame[:4], "big"))
        assert got == list(range(FRAMES))


@PROTOCOLS
async def test_a_pass_writes_its_frames_at_its_end_in_one_write_and_a_queued_turn_end_keeps_its_place(
    protocol: Any,
) -> None:
    writes: list[int] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        frames = websocket.scope["extensions"].get(EXTENSION)
        if frames is not None:  # count the writes of the gateway's frame writer
            write = frames.write
            frames.write = lambda parts: writes.append(len(parts)) or write(parts)
        send_pass = SendPass()
        send_now, queue, task = sender(websocket, send_pass)
        send_pass.begin()
        pushed = [SentenceStart(0, 1, "Hi.", "espeak-ng"), b"a0", b"a1", TurnEnd(1), b"after"]
        for item in pushed:
            if not send_now(item):
                queue.put_nowait(item)
        assert writes == [] and queue.qsize() == 2  # held; the turn_end and what came after it queued
        send_pass.end()
        assert writes == ([6] if frames is not None else [])
        queue.put_nowait(None)
        await task
        await websocket.receive()

    async with server(endpoint, protocol) as url, connect(url) as client:
        async with asyncio.timeout(T):
            got = [await client.recv() for _ in range(5)]
    assert [json.loads(g)["type"] if isinstance(g, str) else g for g in got] == [
        "sentence_start",
        b"a0",
        b"a1",
        "turn_end",
        b"after",
    ]
