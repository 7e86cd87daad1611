"""``/ws``: the streaming websocket (docs/protocol.md). Reads client frames into the hub; one named
writer task per session sends what the session's queue holds."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from broker.errors import ProtocolError
from broker.wire import MAX_JSON_BYTES, Message

from .auth import authorized
from .hub import Hub
from .protocol import Error, client_messages
from .sessions import CloseReason, SessionLink


def router(hub: Hub) -> APIRouter:
    r = APIRouter()

    @r.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        if not authorized(hub.config.auth_token, websocket.headers, websocket.query_params.get("token")):
            await websocket.close(code=1008, reason="unauthorized")
            return
        await websocket.accept()
        await serve_websocket(hub, websocket)

    return r


async def serve_websocket(hub: Hub, websocket: WebSocket) -> None:
    try:
        link = hub.open_session()
    except ProtocolError as exc:
        await websocket.send_text(Error(exc.code, str(exc)).to_json())
        await websocket.close(code=1013, reason=exc.code)
        return
    await websocket.send_text(link.core.ready_message().to_json())
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_write(websocket, link), name=f"ws-writer:{link.session_id}")
        try:
            await _read(hub, websocket, link)
        finally:
            hub.close_session(link, CloseReason.CLIENT_DISCONNECTED)
            link.end()


async def _read(hub: Hub, websocket: WebSocket, link: SessionLink) -> None:
    try:
        while not link.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                hub.receive(link, decode_frame(message.get("text")))
            except ProtocolError as exc:
                hub.refuse(link, exc)
    except WebSocketDisconnect:
        return


def decode_frame(raw_text: str | None) -> Message:
    if raw_text is None:
        raise ProtocolError("binary frames are not accepted: send JSON", code="binary_not_allowed")
    if len(raw_text) > MAX_JSON_BYTES:
        raise ProtocolError("frame too large", code="too_large")
    return client_messages.decode(raw_text)


async def _write(websocket: WebSocket, link: SessionLink) -> None:
    try:
        while True:
            item = await link.out.get()
            if item is None:
                if link.close_reason is CloseReason.CLIENT_TOO_SLOW:
                    await websocket.send_text(
                        Error("client_too_slow", "the client did not read its audio").to_json()
                    )
                    await websocket.close(code=1008, reason="client_too_slow")
                return
            if isinstance(item, bytes):
                await websocket.send_bytes(item)
            else:
                await websocket.send_text(item.to_json())
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
