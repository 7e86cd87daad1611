"""The frames the gateway writes itself (stream_server/http/ws_frames.py) are what websockets'
own parser reads as a client would: FIN, the opcode, no mask, the payload whole, at every length
encoding (7-bit, 16-bit and 64-bit lengths and their edges)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from broker.ws_protocol import SentenceStart
from stream_server.http.ws_frames import frame_parts


def parsed(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        assert not reader.buffer  # nothing left over
        return frame
    raise AssertionError("the parser wanted more bytes than one frame")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 300_000])
def test_a_binary_frame_parses_whole_at_every_length(length: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = parsed(b"".join(frame_parts(payload)))
    assert frame.fin and frame.opcode is Opcode.BINARY and frame.data == payload


def test_a_message_is_one_text_frame_of_its_json() -> None:
    message = SentenceStart(2, 1, "Ça va? " * 40, "piper")  # past 126 bytes, with non-ASCII
    frame = parsed(b"".join(frame_parts(message)))
    assert frame.fin and frame.opcode is Opcode.TEXT and frame.data.decode() == message.to_json()
