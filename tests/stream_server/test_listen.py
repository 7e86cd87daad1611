"""The gateway's own listening socket must give accepted connections TCP_NODELAY (asyncio sets it
only when the socket says it is TCP); without it Nagle and delayed ACKs delay websocket frames."""

from __future__ import annotations

import asyncio
import socket

from stream_server.http.listen import listening_socket


async def test_connections_accepted_on_the_listening_socket_have_tcp_nodelay() -> None:
    sock = listening_socket("127.0.0.1", 0, {})
    assert sock.proto == socket.IPPROTO_TCP
    accepted: asyncio.Queue[int] = asyncio.Queue()

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("socket")
        accepted.put_nowait(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_client, sock=sock)
    async with server:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(5):
            nodelay = await accepted.get()
        writer.close()
    assert nodelay != 0


def test_an_inherited_descriptor_keeps_its_protocol() -> None:
    parent = listening_socket("127.0.0.1", 0, {})
    child = listening_socket("127.0.0.1", 0, {"SESAME_LISTEN_FD": str(parent.fileno())})
    assert child.proto == socket.IPPROTO_TCP
    child.detach()  # the descriptor is the parent's
    parent.close()
