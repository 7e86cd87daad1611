"""A client's frames split by the gateway (stream_server/http/ws_read.py, used by ws_frames.py):
where each frame ends and a plain text frame's payload, as websockets' own parser reads them, at
every length encoding and every point a read may end; everything else is websockets' to read,
whole. On a real socket: the split path is taken, and a byte-at-a-time client, pings,
fragmented messages, binary frames, bad UTF-8, an unmasked frame and an oversized one are answered
as websockets answers them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from stream_server.http.ws_frames import EXTENSION, FramesProtocol
from stream_server.http.ws_read import TOO_LARGE, Split, at_frame_boundary, next_frame
from tests.conftest import T
from tests.stream_server.test_send_now import server


def client() -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://127.0.0.1/ws"), max_size=None)


def sent(protocol: ClientProtocol) -> bytes:
    return b"".join(protocol.data_to_send())


def open_pair() -> tuple[ClientProtocol, ServerProtocol]:
    """A client and a server protocol past the handshake (sans-I/O)."""
    c, s = client(), ServerProtocol(max_size=1 << 20)
    c.send_request(c.connect())
    s.receive_data(sent(c))
    (request,) = s.events_received()
    s.send_response(s.accept(request))
    c.receive_data(b"".join(s.data_to_send()))
    c.events_received()
    return c, s


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
def test_a_text_frame_is_split_and_unmasked_as_websockets_reads_it(length: int) -> None:
    c, s = open_pair()
    payload = bytes(97 + i % 26 for i in range(length))
    c.send_text(payload)
    data = b"x" + sent(c) + b"tail"  # another frame's last byte before it, the next one's after
    assert next_frame(data, 1, None) == Split(len(data) - 4, payload)
    s.receive_data(data[1:-4])
    (frame,) = s.events_received()
    assert frame.opcode is Opcode.TEXT and frame.data == payload


def test_a_frame_not_all_read_is_waited_for_at_every_point_it_may_end() -> None:
    c, _ = open_pair()
    c.send_text(b"a" * 300)  # a 16-bit length: the header itself may be cut anywhere
    data = sent(c)
    for cut in range(len(data)):
        assert next_frame(data[:cut], 0, None) is None
    assert next_frame(data, 0, None) == Split(len(data), b"a" * 300)


def test_every_frame_but_a_plain_masked_text_is_left_to_websockets_whole() -> None:
    c, _ = open_pair()
    c.send_binary(b"\x00\x01")
    c.send_text(b"part", fin=False)
    c.send_continuation(b" two", fin=True)
    c.send_ping(b"p")
    c.send_close(1000)
    frames = sent(c)
    unmasked = bytes((0x81, 2)) + b"hi"
    reserved = bytes((0xC1, 0x80 | 2)) + b"\x00\x00\x00\x00hi"  # RSV1: an extension nobody agreed
    data, at, ends = frames + unmasked + reserved, 0, []
    while (frame := next_frame(data, at, None)) is not None:
        assert isinstance(frame, Split) and frame.text is None
        ends.append(frame.end - at)
        at = frame.end
    assert at == len(data)
    assert ends == [2 + 4 + 2, 2 + 4 + 4, 2 + 4 + 4, 2 + 4 + 1, 2 + 4 + 2, 2 + 2, 2 + 4 + 2]


def test_a_frame_declaring_more_than_the_limit_is_not_waited_for() -> None:
    header = bytes((0x81, 0x80 | 127)) + (1 << 40).to_bytes(8, "big") + b"mask"
    assert next_frame(header, 0, 1 << 20) is TOO_LARGE
    assert next_frame(header, 0, None) is None  # no limit: the rest is waited for


def test_websockets_parser_is_at_a_frame_boundary_only_between_whole_frames() -> None:
    c, s = open_pair()
    assert at_frame_boundary(s)
    c.send_text(b"hello")
    data = sent(c)
    s.receive_data(data[:3])  # the header and part of the mask
    assert not at_frame_boundary(s)
    s.receive_data(data[3:])
    assert at_frame_boundary(s) and s.events_received()[0].data == b"hello"
    c.send_text(b"one", fin=False)
    s.receive_data(sent(c))
    assert not at_frame_boundary(s)  # in a fragmented message: websockets reads the rest


@contextlib.asynccontextmanager
async def endpoint_server(**config: Any) -> AsyncIterator[tuple[str, asyncio.Queue[Any]]]:
    """A uvicorn endpoint on the gateway's protocol: what its reader gets, and whether the frames
    were split here, go to the queue; a message through the app's ``receive`` too."""
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        writer = websocket.scope["extensions"][EXTENSION]

        def reader(text: str | None) -> None:
            got.put_nowait(("split_here", writer._protocol.split_here))
            got.put_nowait(text)

        writer.reader = reader
        with contextlib.suppress(WebSocketDisconnect):
            while (message := await websocket.receive())["type"] != "websocket.disconnect":
                got.put_nowait(("receive", message))
        got.put_nowait(("closed", message.get("code")))

    async with server(endpoint, FramesProtocol, **config) as url:
        yield url, got


class RawClient:
    """A websocket client over a plain socket: its bytes written in pieces as the test chooses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.protocol = reader, writer, client()

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        raw = cls(*await asyncio.open_connection(host, int(port)))
        raw.protocol.send_request(raw.protocol.connect())
        await raw.write(sent(raw.protocol))
        await raw.events()  # the handshake's response
        return raw

    async def write(self, data: bytes, piece: int | None = None) -> None:
        for at in range(0, len(data), piece or max(1, len(data))):
            self.writer.write(data[at : at + (piece or len(data))])
            await self.writer.drain()

    async def events(self) -> list[Any]:
        async with asyncio.timeout(T):
            while not (events := self.protocol.events_received()):
                data = await self.reader.read(65536)
                if not data:
                    self.protocol.receive_eof()
                    return self.protocol.events_received()
                self.protocol.receive_data(data)
        return events

    async def closed_with(self) -> int | None:
        while True:
            for event in await self.events():
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    return Close.parse(event.data).code
            if self.reader.at_eof():
                return None

    def close(self) -> None:
        self.writer.close()


async def next_item(got: asyncio.Queue[Any]) -> Any:
    async with asyncio.timeout(T):
        return await got.get()


async def test_a_client_writing_a_byte_at_a_time_is_read_whole_in_order_pings_and_fragments_too() -> None:
    async with endpoint_server() as (url, got):
        raw = await RawClient.connect(url)
        p = raw.protocol
        p.send_text("première".encode())
        p.send_ping(b"are you there")
        p.send_text(b"frag", fin=False)
        p.send_continuation(b"mented", fin=True)
        p.send_binary(b"\x00\x01")
        p.send_text(b"last" * 100)
        await raw.write(sent(p), piece=1)
        texts = []
        while len(texts) < 4:
            item = await next_item(got)
            if not isinstance(item, tuple):
                texts.append(item)
            elif item[0] == "split_here":
                assert item[1] is True
        assert texts == ["première", "fragmented", None, "last" * 100]
        pong = [e for e in await raw.events() if e.opcode is Opcode.PONG]
        assert pong[0].data == b"are you there"
        p.send_close(1000)
        after_close = bytes((0x81, 0x80 | 5)) + b"\x00\x00\x00\x00after"  # websockets discards it
        await raw.write(sent(p) + after_close)
        assert await raw.closed_with() == 1000
        assert await next_item(got) == ("closed", 1000)
        raw.close()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe", 1007),  # not UTF-8
        (None, 1002),  # an unmasked frame from a client
        (b"x" * 2000, 1009),  # over the server's ws_max_size
    ],
    ids=["bad-utf8", "unmasked", "too-large"],
)
async def test_a_bad_frame_after_a_good_one_closes_the_socket_as_websockets_would(
    data: bytes | None, code: int
) -> None:
    async with endpoint_server(ws_max_size=1000) as (url, got):
        raw = await RawClient.connect(url)
        raw.protocol.send_text(b"fine")
        if data is None:
            bad = bytes((0x81, 5)) + b"plain"
        else:
            raw.protocol.send_text(data)
        await raw.write(sent(raw.protocol) + (bad if data is None else b""))
        assert await next_item(got) == ("split_here", True)
        assert await next_item(got) == "fine"
        assert await raw.closed_with() == code
        raw.close()
