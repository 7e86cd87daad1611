"""A publish written to the socket where it is made (broker/publish_now.py), on a real mosquitto:
nothing is left for the loop to write when ``publish_now`` returns, the message arrives, the
future is the broker's PUBACK, and a broker that never acknowledges fails it within the bound."""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import socket
from collections.abc import AsyncIterator

import pytest

from broker import topics
from broker.errors import BrokerError, PubackLost
from broker.launcher import PRODUCTION_CONFIG, Mosquitto, free_port
from broker.link import MqttLink, OnMessage
from tests.conftest import T

USER = "w-now"
TOPIC = topics.worker_status(USER)  # the production ACL lets a worker write and read it


@contextlib.asynccontextmanager
async def subscribed(broker: Mosquitto, qos: int, on_message: OnMessage) -> AsyncIterator[MqttLink]:
    """A link of USER subscribed to TOPIC at ``qos``, once its subscription holds."""
    ready = asyncio.Event()

    async def on_connect(_link: MqttLink) -> None:
        ready.set()

    link = MqttLink(
        broker.url_for(USER),
        f"now-{free_port()}",
        subscriptions=[(TOPIC, qos)],
        on_message=on_message,
        on_connect=on_connect,
    )
    async with link:
        async with asyncio.timeout(4 * T):
            await ready.wait()
        yield link


async def test_a_publish_is_written_before_publish_now_returns_and_its_future_is_the_puback() -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(_topic: str, payload: bytes) -> None:
        await got.put(payload)

    with Mosquitto() as broker:
        # QoS 0: this client writes no PUBACK of its own
        async with subscribed(broker, 0, on_message) as link:
            assert link._client is not None
            paho = link._client._client
            # no Nagle on the way: the link's socket and the broker's (the production config)
            sock = paho.socket()
            assert isinstance(sock, socket.socket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert "set_tcp_nodelay true" in PRODUCTION_CONFIG.read_text().splitlines()
            for qos in (1, 0, 1):
                done = link.publish_now(TOPIC, f"qos {qos}".encode(), qos=qos)
                # aiomqtt's publish left the packet in paho's queue for the loop to write later
                assert not paho.want_write()
                async with asyncio.timeout(4 * T):
                    await done
                # the PUBACK took passes of the loop: no writer was left watching the socket (an
                # always-writable socket would call it on every pass: a busy loop)
                assert not watched_for_writing(paho.socket())
            async with asyncio.timeout(4 * T):
                received = [await got.get() for _ in range(3)]
        assert received == [b"qos 1", b"qos 0", b"qos 1"]
        with pytest.raises(BrokerError, match="not connected"):
            link.publish_now(TOPIC, b"after close", qos=1)


def watched_for_writing(sock: object) -> bool:
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    key = selector.get_map().get(sock.fileno())  # type: ignore[attr-defined]
    return key is not None and bool(key.events & selectors.EVENT_WRITE)


@contextlib.asynccontextmanager
async def unanswered(timeout_s: float) -> AsyncIterator[tuple[Mosquitto, asyncio.Future[None]]]:
    """A QoS 1 publish written to a broker that takes it into its socket and says nothing (stopped),
    with ``timeout_s`` for its PUBACK; the broker and the publish's future."""
    with Mosquitto() as broker:
        link = MqttLink(broker.url_for(USER), f"now-{free_port()}", publish_timeout_s=timeout_s)
        async with link:
            await link.wait_connected(4 * T)
            assert broker.proc is not None
            os.kill(broker.proc.pid, signal.SIGSTOP)
            try:
                yield broker, asyncio.ensure_future(link.publish_now(TOPIC, b"unheard", qos=1))
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)


async def test_a_publish_the_broker_never_acknowledges_fails_within_the_bound() -> None:
    async with unanswered(0.3) as (_broker, done):
        with pytest.raises(BrokerError, match=r"not acknowledged within 0\.3s"):
            async with asyncio.timeout(4 * T):
                await done


async def test_a_publish_whose_connection_closes_fails_at_once_not_at_its_timeout() -> None:
    async with unanswered(600.0) as (broker, done):
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGKILL)  # the node dies: the connection closes
        with pytest.raises(PubackLost):
            async with asyncio.timeout(4 * T):
                await done


async def test_a_publish_right_after_a_qos1_read_leaves_no_writer_behind() -> None:
    """Reading a QoS 1 message, paho queues its PUBACK and aiomqtt schedules a writer for it; a
    publish made by that message's handler writes both at once. The writer still comes a pass
    later: it must find nothing, go, and not stay on the always-writable socket (a busy loop)."""
    replies: list[asyncio.Future[None]] = []
    answered = asyncio.Event()
    links: list[MqttLink] = []

    async def on_message(_topic: str, payload: bytes) -> None:
        reply = links[0].publish_now(topics.worker_heartbeat(USER), payload, qos=1)
        replies.append(asyncio.ensure_future(reply))
        if len(replies) == 5:
            answered.set()

    with Mosquitto() as broker:
        async with subscribed(broker, 1, on_message) as link:
            links.append(link)
            assert link._client is not None
            paho = link._client._client
            for i in range(5):
                await link.publish(TOPIC, f"{i}".encode(), qos=1)
            async with asyncio.timeout(4 * T):
                await answered.wait()
                await asyncio.gather(*replies)
                await link.publish(topics.worker_heartbeat(USER), b"last", qos=1)  # passes of the loop
            assert not watched_for_writing(paho.socket())
