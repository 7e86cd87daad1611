"""Incoming MQTT messages handed over in the read that brings them (issue 20).

aiomqtt's reader callback has paho read the socket, and paho's ``on_message`` puts each message in
an ``asyncio.Queue``. Its iterator then makes a task for ``queue.get()`` and waits on it with
``asyncio.wait`` beside the disconnect future, per message: the handler runs two passes of the loop
after the read, behind a task made and a wait set up and torn down each time. For the gateway that
was every worker's audio chunk and reply, and the first audio of every sentence.

``read_here`` replaces aiomqtt's reader with one that reads as aiomqtt's does and then hands what
paho queued to a synchronous handler, in order, before it returns. Not from inside paho's
``on_message``: paho holds its callback lock there, and a publish the handler makes would call
paho's ``on_publish`` under the same lock (a deadlock). Messages queued before it is installed are
handed over first, so the order is the order of arrival.

The PUBACKs of the QoS 1 messages a read brings are written at its end, after their handlers (a
gateway's frame for the client first): paho would have asked aiomqtt to watch the socket for
writing, which wakes the loop through its self-pipe (a system call in the read, before the
handler) and writes them a pass later, behind two changes of the loop's watch (issue 20).
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from collections.abc import Callable

import aiomqtt

from .publish_now import write, writing_here


def read_here(
    client: aiomqtt.Client, handle: Callable[[aiomqtt.Message], None], lost: Callable[[], None]
) -> None:
    """From now on, ``handle`` each message of ``client`` in the socket read that brings it; a read
    that meets the end of the connection calls ``lost`` first (what the messages before the end set
    off must not be published into it). ``handle`` must not raise (an error would end the
    connection, as a broken read does)."""
    paho = client._client
    sock = paho.socket()
    if sock is None:
        return  # not connected: the caller's wait for the disconnect ends at once
    queue = client._queue
    loop = asyncio.get_running_loop()

    def hand_over() -> None:
        while not queue.empty():
            handle(queue.get_nowait())

    def read() -> None:  # aiomqtt's reader, then the hand-over, then the acknowledgements
        try:
            with writing_here(client):  # the PUBACKs paho queues are written below, not by a writer
                while True:
                    paho.loop_read()
                    # paho does not always take all decoded bytes of an SSL socket in one read
                    pending = getattr(paho._sock, "pending", None)
                    if pending is not None and pending() > 0:
                        continue
                    break
            if client._disconnected.done():
                lost()
            hand_over()
            if not client._disconnected.done():
                write(client)
        except Exception as exc:  # as aiomqtt's: a broken read ends the connection
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)

    hand_over()
    loop.remove_reader(sock.fileno())
    loop.add_reader(sock.fileno(), read)


async def until_disconnected(client: aiomqtt.Client) -> None:
    """Wait as aiomqtt's message iterator waits, and end as it ends: ``MqttError`` on a disconnect."""
    disconnected = client._disconnected
    await asyncio.wait([disconnected])  # never cancels the future it waits on
    raise aiomqtt.MqttError("Disconnected during message iteration") from (
        None if disconnected.cancelled() else disconnected.exception()
    )


def payload_bytes(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    return payload if isinstance(payload, bytes) else str(payload).encode()


def unread_bytes(client: aiomqtt.Client) -> int:
    """Bytes the kernel holds for ``client``'s socket, not read yet (0 when it has none)."""
    sock = client._client.socket()
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])
