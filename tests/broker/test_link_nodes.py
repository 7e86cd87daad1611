"""SESAME_MQTT_URL with several broker nodes: parsed strictly; the link skips a dead first node,
moves on when its node dies, subscribes again there and runs ``on_connect`` again."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker import topics
from broker.errors import ConfigError
from broker.launcher import Mosquitto, free_port
from broker.link import MqttLink
from broker.settings import MqttNodes, MqttUrl
from tests.conftest import T


def test_several_urls_in_order_and_one_alone() -> None:
    nodes = MqttNodes.parse(" mqtt://a:1883, mqtt://u:p@b:1884 ")
    assert nodes.urls == (MqttUrl("a", 1883), MqttUrl("b", 1884, "u", "p"))
    assert str(nodes) == "mqtt://a:1883,mqtt://u@b:1884"  # never the password
    assert MqttNodes.parse("mqtt://a").urls == (MqttUrl("a", 1883),)
    assert MqttNodes.of(MqttUrl("a", 1)) == MqttNodes((MqttUrl("a", 1),))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("mqtt://a:1883,", "empty entry"),
        ("mqtt://a:1883,,mqtt://b:1", "empty entry"),
        ("mqtt://a:1883,mqtt://b:x", "invalid port"),
        ("mqtt://a:1883,http://b:1", "scheme"),
        ("mqtt://a:1883,mqtt://a:1883", "twice"),
    ],
)
def test_a_bad_list_is_a_config_error_naming_the_variable(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        MqttNodes.parse(text)
    assert "SESAME_MQTT_URL" in str(err.value)


# The brokers run the production ACL: a worker user may both write and read its own status topic.
USER = "w-probe"
TOPIC = topics.worker_status(USER)


class Probe:
    """A link on ``nodes`` subscribed to one topic, recording connections and messages."""

    def __init__(self, nodes: MqttNodes) -> None:
        self.landed: list[MqttUrl | None] = []
        self.messages: asyncio.Queue[bytes] = asyncio.Queue()
        self.link = MqttLink(
            nodes,
            f"probe-{free_port()}",
            subscriptions=[(TOPIC, 1)],
            on_message=self._message,
            on_connect=self._connected,
            on_disconnect=self._lost,
            backoff_max=0.2,
        )
        self.connects = asyncio.Event()
        self.lost = asyncio.Event()

    def _lost(self) -> None:
        self.lost.set()

    async def _message(self, _topic: str, payload: bytes) -> None:
        await self.messages.put(payload)

    async def _connected(self, link: MqttLink) -> None:
        self.landed.append(link.node)
        self.connects.set()

    async def landed_on(self, node: MqttUrl) -> None:
        async with asyncio.timeout(4 * T):
            while not self.landed or self.landed[-1] != node or not self.link.connected.is_set():
                self.connects.clear()
                await self.connects.wait()


async def test_a_dead_first_node_is_skipped() -> None:
    with Mosquitto() as live:
        dead = MqttUrl("127.0.0.1", free_port())
        node = live.url_for(USER)
        probe = Probe(MqttNodes((dead, node)))
        async with probe.link:
            await probe.landed_on(node)
            assert probe.link.node == node and probe.link.refused == {}
            await probe.link.publish(TOPIC, b"one")
            async with asyncio.timeout(2 * T):
                assert await probe.messages.get() == b"one"


async def test_while_the_link_is_down_nothing_after_the_loss_counts_as_read() -> None:
    """A gateway judges a worker's silence only up to ``read_through``: while its own link is down
    it hears nothing, so that time must not read as heard (the cluster test's worker was declared
    dead for the gateway's own deafness)."""
    with Mosquitto() as node:
        probe = Probe(MqttNodes((node.url_for(USER),)))
        async with probe.link:
            await probe.landed_on(node.url_for(USER))
            now = time.monotonic()
            assert probe.link.read_through(now) == now  # connected, nothing unread
            node.stop()
            async with asyncio.timeout(4 * T):
                await probe.lost.wait()
            later = time.monotonic() + 5.0
            assert probe.link.read_through(later) == probe.link.lost_at < later
            assert probe.link.lost_at >= now


async def test_the_link_moves_on_when_its_node_dies_and_subscribes_there_again() -> None:
    with Mosquitto() as a, Mosquitto() as b:
        node_a, node_b = a.url_for(USER), b.url_for(USER)  # each node's own credentials
        probe = Probe(MqttNodes((node_a, node_b)))
        async with probe.link:
            await probe.landed_on(node_a)
            a.stop()  # the node dies
            await probe.landed_on(node_b)
            assert probe.landed == [node_a, node_b]  # on_connect ran again, on b
            await probe.link.publish(TOPIC, b"two")
            async with asyncio.timeout(2 * T):
                assert await probe.messages.get() == b"two"  # subscribed on b
            b.stop()
            a.start()  # back to the first once the second dies too
            await probe.landed_on(node_a)
