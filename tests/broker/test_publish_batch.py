"""QoS 0 publishes in one write (broker/publish_batch.py): mosquitto hands each message on, in
order, byte for byte, whatever its size (one-, two- and three-byte remaining lengths, empty)."""

from __future__ import annotations

import asyncio

import pytest

from broker import topics
from broker.errors import BrokerError
from broker.launcher import Mosquitto, free_port
from broker.link import MqttLink
from tests.conftest import T

USER = "w-batch"
TOPIC = topics.worker_status(USER)  # the production ACL lets a worker write and read it


async def test_a_batch_arrives_as_separate_messages_in_order() -> None:
    payloads = [b"", b"one", bytes(range(256)) * 3, b"z" * 20_000, b"last"]
    got: asyncio.Queue[bytes] = asyncio.Queue()
    subscribed = asyncio.Event()

    async def on_message(_topic: str, payload: bytes) -> None:
        await got.put(payload)

    async def on_connect(_link: MqttLink) -> None:
        subscribed.set()

    with Mosquitto() as broker:
        link = MqttLink(
            broker.url_for(USER),
            f"batch-{free_port()}",
            subscriptions=[(TOPIC, 0)],
            on_message=on_message,
            on_connect=on_connect,
        )
        async with link:
            async with asyncio.timeout(4 * T):
                await subscribed.wait()
            await link.publish_batch([(TOPIC, p) for p in payloads])
            await link.publish_batch([(TOPIC, b"second batch")])
            # more than a socket buffer holds: paho writes the batch in pieces
            many = [i.to_bytes(4, "big") * 512 for i in range(3000)]
            await link.publish_batch([(TOPIC, p) for p in many])
            async with asyncio.timeout(8 * T):
                received = [await got.get() for _ in range(len(payloads) + 1 + len(many))]
        assert received == [*payloads, b"second batch", *many]
        with pytest.raises(BrokerError, match="not connected"):
            await link.publish_batch([(TOPIC, b"after close")])
