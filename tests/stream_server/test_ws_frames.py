"""The frames the gateway writes itself (stream_server/http/ws_frames.py) are what websockets'
own parser reads as a client would: FIN, the opcode, no mask, the payload whole, at every length
encoding (7-bit, 16-bit and 64-bit lengths and their edges). A client's messages go to the app's
reader as they are read, in order, behind any message still queued for the app's ``receive``; a
reader that fails closes the socket with 1011."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import uvicorn
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from broker.ws_protocol import SentenceStart
from stream_server.http.ws_frames import EXTENSION, FramesProtocol, FrameWriter, frame_parts
from tests.conftest import T
from tests.stream_server.test_send_now import server


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


class Unread:
    def pause_reading(self) -> None:
        pass


async def test_a_message_goes_to_the_reader_as_it_is_read_unless_one_is_queued_ahead_of_it() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not run: no handshake here")

    protocol = FramesProtocol(
        config=uvicorn.Config(app, ws=FramesProtocol), server_state=ServerState(), app_state={}
    )
    protocol.transport = Unread()  # type: ignore[assignment]  # the queued path pauses reading
    protocol.frame_writer = FrameWriter(protocol)
    read: list[str | None] = []
    protocol.frame_writer.reader = read.append

    def arrives(kind: str, data: bytes) -> None:
        protocol.curr_msg_data_type, protocol.frames = kind, [data]  # type: ignore[assignment]
        protocol.send_receive_event_to_app()

    arrives("text", b'{"type":"flush"}')
    arrives("bytes", b"\x00\x01")
    assert read == ['{"type":"flush"}', None] and protocol.queue.empty()
    protocol.queue.put_nowait({"type": "websocket.receive", "text": "earlier"})  # not read by the app yet
    arrives("text", b"later")
    assert read == ['{"type":"flush"}', None]  # queued behind "earlier", in order
    assert [protocol.queue.get_nowait()["text"] for _ in range(2)] == ["earlier", "later"]
    arrives("text", b"again")
    assert read[-1] == "again"


@contextlib.asynccontextmanager
async def reading_server(reader: Callable[[str | None], None]) -> AsyncIterator[str]:
    """A uvicorn endpoint on the gateway's protocol whose client messages go to ``reader``."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.scope["extensions"][EXTENSION].reader = reader
        with contextlib.suppress(WebSocketDisconnect):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                raise AssertionError("a message reached the app's receive: nothing was queued ahead")

    async with server(endpoint, FramesProtocol) as url:
        yield url


async def test_on_a_real_socket_messages_reach_the_reader_in_order_and_a_failing_reader_closes_1011() -> None:
    got: list[str | None] = []
    all_read = asyncio.Event()

    def reader(text: str | None) -> None:
        if text == "boom":
            raise RuntimeError("the app failed")
        got.append(text)
        if len(got) == 4:
            all_read.set()

    async with reading_server(reader) as url, connect(url) as ws:
        for message in ("one", "two", b"\x00", "three"):
            await ws.send(message)
        async with asyncio.timeout(T):
            await all_read.wait()
        assert got == ["one", "two", None, "three"]
        await ws.send("boom")
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(T):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
