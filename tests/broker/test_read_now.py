"""``on_message_now``: a link's messages handled in the socket read that brings them
(broker/read_now.py), on the real broker and ACL: in order, outside any task (not two passes of the
loop later in the link's), a handler that publishes from inside (paho's callback lock is not held
then), one that raises costs only its message, and after the broker restarts it goes on."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from broker import topics
from broker.errors import BrokerError
from broker.launcher import Mosquitto
from broker.link import MqttLink
from broker.settings import MqttUrl
from tests.conftest import T

USER = "w-read-now"  # the production ACL lets a worker write and read its own status topic
TOPIC = topics.worker_status(USER)


class Recorder:
    def __init__(self, n: int) -> None:
        self.n = n
        self.payloads: list[bytes] = []
        self.in_task: list[bool] = []
        self.all_in = asyncio.Event()
        self.caught_up = 0

    def handle(self, _topic: str, payload: bytes) -> None:
        self.in_task.append(asyncio.current_task() is not None)
        if payload == b"bad":
            raise ValueError("a handler that fails on one message")
        self.payloads.append(payload)
        if len(self.payloads) == self.n:
            self.all_in.set()

    def up(self) -> None:
        self.caught_up += 1


async def test_messages_are_handled_in_the_read_in_order_and_a_raise_costs_one_message(
    shared_mosquitto: Mosquitto,
) -> None:
    sent = [str(i).encode() for i in range(300)]
    rec = Recorder(len(sent))
    link = MqttLink(shared_mosquitto.url_for(USER), "read-now-1", subscriptions=[(TOPIC, 1)])
    link.on_message_now, link.on_caught_up = rec.handle, rec.up
    async with link:
        await link.wait_connected(T)
        await link.publish(TOPIC, b"bad", qos=1)
        for payload in sent:
            link.publish_now(TOPIC, payload, qos=0)
        async with asyncio.timeout(T):
            await rec.all_in.wait()
    assert rec.payloads == sent  # in order; the bad one was logged and skipped
    assert len(rec.in_task) == len(sent) + 1 and not any(rec.in_task)  # each in the reader's callback
    assert rec.caught_up >= 1


async def test_a_handler_publishes_from_inside_and_the_link_comes_back_after_a_broker_restart() -> None:
    with Mosquitto() as broker:
        pongs: asyncio.Queue[bytes] = asyncio.Queue()
        reconnected = asyncio.Event()

        async def connected(link: MqttLink) -> None:
            if link.connects >= 2:
                reconnected.set()

        link = MqttLink(
            broker.url_for(USER),
            "read-now-2",
            subscriptions=[(TOPIC, 1)],
            on_connect=connected,
            backoff_max=0.2,
        )

        def answer(_topic: str, payload: bytes) -> None:
            if payload.startswith(b"ping"):
                link.publish_now(TOPIC, b"pong" + payload[4:], qos=1)  # written from inside the read
            else:
                pongs.put_nowait(payload)

        link.on_message_now = answer
        async with link:
            await link.wait_connected(T)
            for round_ in (b"1", b"2"):
                link.publish_now(TOPIC, b"ping" + round_, qos=1)
                async with asyncio.timeout(T):
                    assert await pongs.get() == b"pong" + round_
                if round_ == b"1":
                    broker.restart()  # the same port: the link reconnects and reads in place again
                    async with asyncio.timeout(2 * T):
                        await reconnected.wait()


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One MQTT packet: its first byte, its remaining length, its body."""
    first = await reader.readexactly(1)
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first + await reader.readexactly(length)


async def test_a_connection_found_dead_by_a_write_is_said_lost_before_any_task_runs_again() -> None:
    """A broker node killed mid-burst: the gateway's next job write meets the reset. The link used
    to say so (``connected`` cleared, ``on_disconnect``) only when its own task next ran, a pass or
    two later; the publisher's task, woken first, still saw the link connected, wrote again into the
    closed client at once and failed the job as ``broker_unavailable`` instead of waiting for the
    next node (test_cluster_e2e, once). Now it is said before any task runs again."""
    go, reset = asyncio.Event(), asyncio.Event()

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert (await read_packet(reader))[0] == 0x10  # CONNECT
        writer.write(bytes((0x20, 3, 0, 0, 0)))  # CONNACK: accepted, no properties
        subscribe = await read_packet(reader)
        assert subscribe[0] == 0x82
        packet_id = subscribe[1:3]  # read_packet leaves out the remaining length
        writer.write(bytes((0x90, 4)) + packet_id + bytes((0, 1)))  # SUBACK: granted QoS 1
        await go.wait()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, as from a killed process's socket
        reset.set()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lost: list[bool] = []
    link = MqttLink(
        MqttUrl("127.0.0.1", port),
        "read-now-3",
        subscriptions=[(TOPIC, 1)],
        on_disconnect=lambda: lost.append(True),
        backoff_initial=5.0,  # no reconnect within the test
    )
    link.on_message_now = lambda _topic, _payload: None
    async with server, link:
        await link.wait_connected(T)
        go.set()
        async with asyncio.timeout(T):
            await reset.wait()
        with pytest.raises(BrokerError):
            link.publish_now(TOPIC, b"a job", qos=1)  # the write meets the reset
        await asyncio.sleep(0)  # one pass: what was scheduled when the client saw it dead
        assert (link.connected.is_set(), lost) == (False, [True])


async def test_a_qos1_message_is_acknowledged_in_the_read_that_brings_it(shared_mosquitto: Mosquitto) -> None:
    """Its PUBACK is written at the end of that read, after the handler: paho never asks for a
    writer on the loop for it (aiomqtt's would wake the loop through its self-pipe and write the
    PUBACK a pass or two later)."""
    sent = [str(i).encode() for i in range(40)]
    rec = Recorder(len(sent))
    link = MqttLink(shared_mosquitto.url_for(USER), "read-now-ack", subscriptions=[(TOPIC, 1)])
    link.on_message_now = rec.handle
    async with link:
        await link.wait_connected(T)
        assert link._client is not None
        paho = link._client._client
        writers: list[object] = []
        paho.on_socket_register_write = lambda *args: writers.append(args)
        for payload in sent:
            await link.publish(TOPIC, payload, qos=1)
        async with asyncio.timeout(T):
            await rec.all_in.wait()
        assert rec.payloads == sent
        assert writers == [] and not paho.want_write()  # every PUBACK written, no writer asked for
