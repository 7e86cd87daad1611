"""Frames written in the call that makes them (stream_server/http/send_now.py), on the real uvicorn
websockets-sansio server the gateway runs: sent at once while the socket takes them; once the
client stops reading and the transport pauses, queued for the writer instead, and every frame
reaches the client once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from stream_server.http.send_now import SendNow, finished_now
from stream_server.hub.live_sessions import Outgoing
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


@contextlib.asynccontextmanager
async def server(results: asyncio.Queue[tuple[int, int]]) -> AsyncIterator[str]:
    """A uvicorn websocket endpoint that pushes FRAMES frames as SessionLink.push does (send_now,
    else the queue its writer task drains); it reports how many went each way."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        send_now = SendNow(websocket, queue)

        async def writer() -> None:
            while (item := await queue.get()) is not None:
                send_now.writer_holds = True
                assert isinstance(item, bytes)
                await websocket.send_bytes(item)
                send_now.writer_holds = False

        task = asyncio.create_task(writer())
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

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # a client may connect at once: the kernel holds it until uvicorn accepts
    port = sock.getsockname()[1]
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    config = uvicorn.Config(app, ws="websockets-sansio", ws_per_message_deflate=False, log_level="warning")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, T)


async def test_frames_go_at_once_then_queue_behind_a_paused_socket_and_arrive_once_in_order() -> None:
    results: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    async with server(results) as url, connect(url, max_size=None, max_queue=1) as ws:
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
