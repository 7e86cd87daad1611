"""``on_message_now``: a link's messages handled in the socket read that brings them
(broker/read_now.py), on the real broker and ACL: in order, outside any task (not two passes of the
loop later in the link's), a handler that publishes from inside (paho's callback lock is not held
then), one that raises costs only its message, and after the broker restarts it goes on."""

from __future__ import annotations

import asyncio

from broker import topics
from broker.launcher import Mosquitto
from broker.link import MqttLink
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
