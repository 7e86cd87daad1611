"""A websocket frame written in the call that makes it, when nothing waits ahead of it.

Each socket's writer task (``routes_ws.py``) sends what its session's queue holds. A frame put
there leaves on the loop's next pass, after the I/O that pass finds first (during a burst of a
worker's audio: more MQTT messages and their PUBACKs), ~0.3 ms of the gateway's addition to the
first audio (issue 20, docs/benchmarks.md). So a frame with nothing queued ahead of it, on a socket
whose writer holds nothing, is sent at once.

ASGI's send is a coroutine, but uvicorn's websockets-sansio send waits on one thing only, a paused
transport (its ``writable`` event), before it writes anything; Starlette's ``send`` around it waits
on nothing else. Run up to its first wait, it either finishes (the frame is written) or is waiting
and is closed unsent: the frame then goes to the queue and the writer sends it as before, in order.
``ready`` (a resume token minted for this socket) and ``turn_end`` (the drain's poke) always go
through the writer, which handles them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket

from broker.wire import Message
from broker.ws_protocol import Ready, TurnEnd
from stream_server.hub.live_sessions import Outgoing


class SendNow:
    """``SessionLink.send_now`` for one socket: True when the item was written here."""

    def __init__(self, websocket: WebSocket, queue: asyncio.Queue[Outgoing]) -> None:
        self.websocket = websocket
        self.queue = queue
        self.writer_holds = False  # the writer task has taken an item it has not finished sending

    def __call__(self, item: Message | bytes) -> bool:
        if self.writer_holds or not self.queue.empty() or isinstance(item, (Ready, TurnEnd)):
            return False
        return finished_now(send_frame(self.websocket, item))


def send_frame(websocket: WebSocket, item: Message | bytes) -> Coroutine[Any, Any, None]:
    """The send of one queued item: audio as a binary frame, a message as JSON text (the writer
    task awaits it; ``SendNow`` runs it up to its first wait)."""
    if isinstance(item, bytes):
        return websocket.send_bytes(item)
    return websocket.send_text(item.to_json())


def finished_now(send: Coroutine[Any, Any, None]) -> bool:
    """Run ``send`` up to its first wait: True if it finished; else it is closed unsent (False).
    An error leaves the frame to the writer, whose own send meets it and ends the socket's writing."""
    try:
        send.send(None)
    except StopIteration:
        return True
    except Exception:  # the writer's send raises it again and handles it
        return False
    send.close()
    return False
