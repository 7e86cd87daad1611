"""A client's websocket frames split out of the bytes read, its plain text frames read here (pure).

websockets' parser is a chain of generators (the protocol's ``parse``, ``Frame.parse``, the stream
reader's ``read_exact``), stepped once per read, with a ``Frame`` and an event list made for each
frame. It costs ~3 us on a warm CPU, but the read of a client's ``speak`` usually comes after the
gateway has idled: ~60 us there, the largest part of the gateway's read of a text frame (issue 20,
docs/benchmarks.md). A client's message is almost always one text frame, whole (FIN, no RSV bits:
no extension is negotiated) and masked, as RFC 6455 requires of a client.

``next_frame`` finds where each frame in a buffer ends and unmasks the payload of such a plain text
frame; every other frame (binary, fragments, ping, pong, close, an unmasked or reserved one) is
left to websockets, handed to it whole, so its parser is always at a frame boundary when it gets
one. ``at_frame_boundary`` says whether websockets' parser is at one now (waiting for the next
frame with nothing buffered): only then can the frames be split here from the next read on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from websockets.protocol import Protocol
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

FIN_TEXT: Final = 0x81  # FIN, no RSV bits, opcode 1 (text)
MASKED: Final = 0x80


@dataclass(frozen=True, slots=True)
class Split:
    end: int  # where the frame ends in the buffer
    text: bytes | None  # a plain text frame's payload, unmasked; None: websockets reads this frame


class TooLarge:
    """A frame that declares more than the limit: websockets reads it (and closes, 1009)."""


TOO_LARGE: Final = TooLarge()


def next_frame(buf: bytes, at: int, limit: int | None) -> Split | TooLarge | None:
    """The frame starting at ``buf[at]``; None while it is not all there. A frame declaring more
    than ``limit`` bytes is not waited for (the caller hands it to websockets at once)."""
    have = len(buf) - at
    if have < 2:
        return None
    second = buf[at + 1]
    length, head = second & 0x7F, 2
    if length == 126:
        if have < 4:
            return None
        length, head = int.from_bytes(buf[at + 2 : at + 4], "big"), 4
    elif length == 127:
        if have < 10:
            return None
        length, head = int.from_bytes(buf[at + 2 : at + 10], "big"), 10
    if limit is not None and length > limit:
        return TOO_LARGE
    masked = second & MASKED
    start = at + head + (4 if masked else 0)
    end = start + length
    if end > len(buf):
        return None
    if buf[at] != FIN_TEXT or not masked:
        return Split(end, None)
    return Split(end, apply_mask(buf[start:end], buf[start - 4 : start]))


def message_limit(conn: Protocol) -> int | None:
    """The most a new message may carry, as websockets' parser counts it."""
    limits = [n for n in (conn.max_message_size, conn.max_fragment_size) if n is not None]
    return min(limits) if limits else None


_AT_EOF = StreamReader.at_eof.__code__


def at_frame_boundary(conn: Protocol) -> bool:
    """Is websockets' parser waiting for the start of a frame with nothing buffered? (It then
    waits in its stream reader's ``at_eof``; anywhere else it is in the middle of something.)"""
    if conn.reader.buffer or conn.current_size is not None:
        return False
    step: Any = conn.parser
    while getattr(step, "gi_yieldfrom", None) is not None:
        step = step.gi_yieldfrom
    return getattr(step, "gi_code", None) is _AT_EOF
