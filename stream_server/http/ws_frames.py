"""Websocket data frames the gateway writes itself, several in one write, and reads as they come
(issue 20).

A frame sent through ASGI goes through Starlette's send, uvicorn's and then websockets' framing,
one ``write()`` each: about 55 us for the first audio frame of a sentence on this 2-core VM, and
170 us for the ``sentence_start`` just before it, where the client is woken (hop stamps in
docs/benchmarks.md). Both are made in one pass of the hub; here they leave in one write.

``FramesProtocol`` is uvicorn's websockets-sansio protocol with one ASGI extension,
``scope["extensions"]["sesame.frames"]``: a ``FrameWriter`` that writes whole data frames (FIN set,
unmasked as a server's are; no extension is negotiated, permessage-deflate is off in main.py) to
the transport at once, only while the socket is open and the transport takes data (not paused).
Anything else (the handshake, close, pings) stays uvicorn's; frames interleave with its writes at
frame boundaries, each write being whole frames.

The other way, a client's message went from uvicorn's queue to the app's reader task on the loop's
next pass, through uvicorn's and Starlette's ``receive``: ~0.13 ms from the frame read to the hub.
With a ``reader`` set on the writer, a whole message is handed to it in the call that reads it,
when nothing is queued ahead of it (else it is queued, behind what is, for the app's ``receive``:
the order is kept). The reader must not raise: an error that escapes it closes the socket (1011).

From the first read after the handshake that finds websockets' parser between frames, the frames
are split here (``ws_read.py``): a plain text frame goes to the app as uvicorn's ``handle_text``
sends it, without websockets' parser; every other frame goes to websockets whole, as read. Once
the connection is no longer open (a close read or sent, a parser error), websockets reads all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from broker.wire import Message
from stream_server.http.ws_read import TooLarge, at_frame_boundary, message_limit, next_frame

EXTENSION = "sesame.frames"
TEXT, BINARY = 0x1, 0x2
FIN = 0x80


def frame_parts(item: Message | bytes) -> list[bytes]:
    """One item as a websocket frame: audio binary, a message JSON text."""
    if isinstance(item, bytes):
        return [frame_header(BINARY, len(item)), item]
    data = item.to_json().encode()
    return [frame_header(TEXT, len(data)), data]


def frame_header(opcode: int, length: int) -> bytes:
    """RFC 6455 5.2: FIN and the opcode, then the payload length in 7, 7+16 or 7+64 bits, no mask."""
    if length < 126:
        return bytes((FIN | opcode, length))
    if length < 1 << 16:
        return bytes((FIN | opcode, 126)) + length.to_bytes(2, "big")
    return bytes((FIN | opcode, 127)) + length.to_bytes(8, "big")


class FrameWriter:
    """The extension's value: one socket's frames, written now or refused."""

    def __init__(self, protocol: FramesProtocol) -> None:
        self._protocol = protocol
        # A client message (text; None for a binary one) to the app now, or None: through ASGI.
        self.reader: Callable[[str | None], None] | None = None

    def writable(self) -> bool:
        p = self._protocol
        return (
            p.handshake_complete
            and not p.close_sent
            and not p.disconnected
            and p.initial_response is None
            and p.writable.is_set()
            and not p.transport.is_closing()
            and p.conn.state is State.OPEN
        )

    def write(self, parts: list[bytes]) -> bool:
        """``parts`` (whole frames) in one write; False (nothing written) when not writable."""
        if not self.writable():
            return False
        self._protocol.transport.write(b"".join(parts))
        return True


class FramesProtocol(WebSocketsSansIOProtocol):
    frame_writer: FrameWriter | None = None
    split_here: bool | None = None  # frames split by ws_read.py; None: not decided yet
    _unsplit = b""  # the start of a frame not all read yet
    _limit: int | None = None

    def data_received(self, data: bytes) -> None:
        if self.split_here is None and self.conn.state is State.OPEN:
            self.split_here = at_frame_boundary(self.conn)
            self._limit = message_limit(self.conn)
        if not self.split_here:
            super().data_received(data)
            return
        buf = self._unsplit + data if self._unsplit else data
        at = 0
        while self.split_here and (frame := next_frame(buf, at, self._limit)) is not None:
            if isinstance(frame, TooLarge):
                self.split_here = False  # websockets reads it, and what follows, and closes
                break
            if frame.text is not None and self.conn.current_size is None:
                self.curr_msg_data_type, self.frames = "text", [frame.text]
                self.send_receive_event_to_app()
            else:
                super().data_received(buf[at : frame.end])
            at = frame.end
            self.split_here = self.conn.state is State.OPEN and not self.transport.is_closing()
        self._unsplit = buf[at:] if self.split_here else b""
        if not self.split_here and at < len(buf):
            super().data_received(buf[at:])  # from a frame boundary: websockets reads on from there

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: dict[str, Any] | None = getattr(self, "scope", None)  # None: the handshake was refused
        if scope is not None:
            self.frame_writer = scope["extensions"][EXTENSION] = FrameWriter(self)

    def send_receive_event_to_app(self) -> None:
        reader = self.frame_writer.reader if self.frame_writer is not None else None
        if reader is None or self.close_sent or not self.queue.empty():
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        text = None
        if self.curr_msg_data_type == "text":
            try:
                text = bytes(data).decode()
            except UnicodeDecodeError:  # as uvicorn answers it
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        try:
            reader(text)
        except Exception:
            self.logger.exception("the app's reader failed on a client message")
            self.conn.send_close(1011)
            self.handle_parser_exception()
