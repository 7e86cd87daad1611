"""A websocket frame written in the pass of the hub that makes it, when nothing waits ahead of it.

Each socket's writer task (``routes_ws.py``) sends what its session's queue holds. A frame put
there leaves on the loop's next pass, after the I/O that pass finds first (during a burst of a
worker's audio: more MQTT messages and their PUBACKs), ~0.3 ms of the gateway's addition to the
first audio (issue 20, docs/benchmarks.md). So a frame with nothing queued ahead of it, on a socket
whose writer holds nothing, is written by the gateway itself (``ws_frames.py``): held while the
hub's pass is open (``hub/send_pass.py``: a ``sentence_start`` and its first audio frame leave in
one write), at once otherwise. ``ready`` (a resume token minted for this socket) and ``turn_end``
(the drain's poke) always go through the writer, which handles them, and so does every frame
after them while one is queued.

Without the frame writer (another ASGI server) the ASGI send is run up to its first wait:
uvicorn's websockets-sansio send waits only on a paused transport, before writing; Starlette's
``send`` around it waits on nothing else. It either finishes (the frame is written) or is waiting
and is closed unsent: the frame then goes to the queue and the writer sends it as before, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket

from broker.wire import Message
from broker.ws_protocol import Ready, TurnEnd
from stream_server.http.ws_frames import EXTENSION, FrameWriter, frame_parts
from stream_server.hub.live_sessions import Outgoing
from stream_server.hub.send_pass import SendPass


class SendNow:
    """``SessionLink.send_now`` for one socket: True when the item was written here, or is held to
    be written at the end of the hub's pass."""

    def __init__(self, websocket: WebSocket, queue: asyncio.Queue[Outgoing], send_pass: SendPass) -> None:
        self.websocket = websocket
        self.queue = queue
        self.send_pass = send_pass
        self.writer_holds = False  # the writer task has taken an item it has not finished sending
        self.frames: FrameWriter | None = websocket.scope.get("extensions", {}).get(EXTENSION)
        self.held: list[bytes] = []  # frames of this pass, for its end

    def __call__(self, item: Message | bytes) -> bool:
        if self.writer_holds or not self.queue.empty() or isinstance(item, (Ready, TurnEnd)):
            return False
        if self.held:
            self.held += frame_parts(item)
            return True
        if self.frames is None:
            return finished_now(send_frame(self.websocket, item))
        if not self.frames.writable():
            return False
        if not self.send_pass.open:
            return self.frames.write(frame_parts(item))
        self.held = frame_parts(item)
        self.send_pass.hold(self)
        return True

    def flush(self) -> None:
        """The pass's frames in one write. Nothing in the pass could stop the socket taking them
        (its transport pauses, or the peer's close is read, only between passes); one that closed
        meanwhile (the session was ended in the pass) drops them with its connection."""
        held, self.held = self.held, []
        if held and self.frames is not None:
            self.frames.write(held)


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
