"""``/ws``: the streaming websocket (docs/protocol.md). Reads client frames into the hub; one named
writer task per socket sends what the session's queue holds. A socket that drops without a close
leaves its session detached for a resume (``detached.py``); ``?session_id=&resume_token=&heard=``
picks it up: the token is the secret of the session's last ``ready``, so only its owner can."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from broker.errors import Overloaded, ProtocolError
from broker.wire import MAX_JSON_BYTES, Message
from broker.ws_protocol import Error, Ready, TurnEnd, client_messages
from stream_server.core.resume import parse_resume
from stream_server.http.auth import Holder, Tokens, client_identity
from stream_server.http.ports import WebsocketHost
from stream_server.http.send_now import SendNow, send_frame
from stream_server.hub.detached import RESUMED_ELSEWHERE, Detached, Refused
from stream_server.hub.live_sessions import CloseReason, SessionLink
from stream_server.hub.shutdown import Drainer

CLEAN_CLOSE = (1000, 1001)  # the client said goodbye: no resume


def router(hub: WebsocketHost, drainer: Drainer | None = None) -> APIRouter:
    r = APIRouter()
    tokens = Tokens.of(hub.config)

    @r.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        holder = tokens.holder(websocket.headers, websocket.query_params.get("token"))
        if holder is None:
            await websocket.close(code=1008, reason="unauthorized")
            return
        await websocket.accept()
        await serve_websocket(hub, websocket, drainer, holder)

    return r


async def serve_websocket(
    hub: WebsocketHost, websocket: WebSocket, drainer: Drainer | None, holder: Holder | None = None
) -> None:
    link, ready = _attach(hub, websocket, holder)
    if link is None:
        await websocket.send_text(ready.to_json())
        throttled = isinstance(ready, Error) and ready.code == "resume_throttled"
        await websocket.close(
            code=1008 if throttled else 1013, reason=ready.code if isinstance(ready, Error) else ""
        )
        return
    attachment, queue = link.attachment, link.out
    await websocket.send_text(ready.to_json())
    send_now = SendNow(websocket, queue, hub.send_pass)
    link.send_now = send_now  # after the ready: nothing may overtake it
    async with asyncio.TaskGroup() as tg:
        writer = _write(
            websocket, link, send_now, drainer=drainer, detached=hub.detached, attachment=attachment
        )
        tg.create_task(writer, name=f"ws-writer:{link.session_id}")
        clean = False
        if send_now.frames is not None:  # a message read with nothing queued ahead goes to the hub at once
            send_now.frames.reader = functools.partial(_received, hub, link, attachment, drainer)
        try:
            clean = await _read(hub, websocket, link, attachment, drainer)
        finally:
            if link.attachment == attachment:  # else a resume on another socket has the session now
                link.send_now = None
                if clean or link.closed:
                    hub.close_session(link, CloseReason.CLIENT_DISCONNECTED)
                else:  # dropped without a close: kept for a resume (closed when resume is off)
                    hub.detached.detach(link, attachment)
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


def _attach(
    hub: WebsocketHost, websocket: WebSocket, holder: Holder | None
) -> tuple[SessionLink | None, Ready | Error]:
    """The session for this socket: the one it resumes (``?session_id=&resume_token=&heard=``),
    else a new one. Each ready carries a new resume token."""
    query = websocket.query_params
    wanted = parse_resume(query.get("session_id"), query.get("heard"), query.get("resume_token"))
    if wanted is not None:
        peer = websocket.client.host if websocket.client is not None else ""
        resumed = hub.detached.resume(wanted, peer)
        if resumed is Refused.THROTTLED:
            return None, Error("resume_throttled", "too many failed resumes: try again later")
        if isinstance(resumed, SessionLink):
            ready = dataclasses.replace(resumed.core.ready_message(), resumed=True, received=resumed.received)
            return resumed, dataclasses.replace(ready, resume_token=hub.detached.issue(resumed))
    address = websocket.client
    client = client_identity((address.host, address.port) if address else None, holder)
    try:
        link = hub.open_session(resumable=True, client=client)
    except Overloaded as exc:
        return None, Error(exc.code, str(exc), retry_after_ms=round(exc.retry_after_s * 1000))
    except ProtocolError as exc:
        return None, Error(exc.code, str(exc))
    return link, dataclasses.replace(link.core.ready_message(), resume_token=hub.detached.issue(link))


async def _read(
    hub: WebsocketHost, websocket: WebSocket, link: SessionLink, attachment: int, drainer: Drainer | None
) -> bool:
    """Client frames queued for the app into the hub (``ws_frames.py`` hands most to ``_received``
    as they are read) until the socket ends; True for a clean close (1000/1001)."""
    try:
        while not link.closed and link.attachment == attachment:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return message.get("code") in CLEAN_CLOSE
            _received(hub, link, attachment, drainer, message.get("text"))
    except WebSocketDisconnect as exc:
        return exc.code in CLEAN_CLOSE
    return False


def _received(
    hub: WebsocketHost, link: SessionLink, attachment: int, drainer: Drainer | None, text: str | None
) -> None:
    """One client message (None: a binary frame) into the hub."""
    if link.closed or link.attachment != attachment:
        return  # the session was ended, or resumed on another socket: this one is on its way out
    link.received += 1
    try:
        hub.receive(link, decode_frame(text))
    except ProtocolError as exc:
        hub.refuse(link, exc)
    if drainer is not None and drainer.draining:
        drainer.poke()


def decode_frame(raw_text: str | None) -> Message:
    if raw_text is None:
        raise ProtocolError("binary frames are not accepted: send JSON", code="binary_not_allowed")
    if len(raw_text) > MAX_JSON_BYTES:
        raise ProtocolError("frame too large", code="too_large")
    return client_messages.decode(raw_text)


async def _write(
    websocket: WebSocket,
    link: SessionLink,
    send_now: SendNow,
    *,
    drainer: Drainer | None,
    detached: Detached,
    attachment: int,
) -> None:
    """What ``send_now`` could not write at once, in order: it writes nothing while this task
    holds an item or the queue holds one."""
    queue = send_now.queue
    try:
        while True:
            item = await queue.get()
            send_now.writer_holds = True
            if item is None:
                if link.attachment != attachment and not link.closed:  # a resume took the session
                    await websocket.close(code=RESUMED_ELSEWHERE, reason="session resumed elsewhere")
                if link.close_reason is CloseReason.GATEWAY_RELOAD:
                    await websocket.close(code=1012, reason="gateway reload: reconnect")
                if link.close_reason is CloseReason.CLIENT_TOO_SLOW:
                    await websocket.send_text(
                        Error("client_too_slow", "the client did not read its audio").to_json()
                    )
                    await websocket.close(code=1008, reason="client_too_slow")
                return
            if isinstance(item, Ready):  # a start's ready: a new token, on this socket only
                item = dataclasses.replace(item, resume_token=detached.issue(link))
            await send_frame(websocket, item)
            if isinstance(item, TurnEnd) and drainer is not None and drainer.draining:
                drainer.poke()  # this session may be idle now
            send_now.writer_holds = False
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
