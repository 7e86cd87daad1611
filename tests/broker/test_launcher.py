"""The local mosquitto launcher: starts on a free port, stops, restarts; clients reconnect."""

from __future__ import annotations

import asyncio
import socket

import pytest

from broker.errors import BrokerError
from broker.launcher import Mosquitto
from broker.link import MqttLink
from tests.conftest import T


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


async def test_start_stop_restart_and_reconnect() -> None:
    broker = Mosquitto().start()
    try:
        assert broker.proc is not None and broker.proc.poll() is None
        assert accepts(broker.port)
        connects: list[int] = []
        second = asyncio.Event()

        async def on_connect(link: MqttLink) -> None:
            connects.append(link.connects)
            if len(connects) >= 2:
                second.set()

        async with MqttLink(broker.url, "launcher-test", on_connect=on_connect, backoff_max=0.2) as link:
            await link.wait_connected(T)
            broker.stop()
            assert not accepts(broker.port)
            broker.start()  # same port
            assert accepts(broker.port)
            async with asyncio.timeout(2 * T):
                await second.wait()  # the link reconnected on its own
            assert connects == [1, 2]
    finally:
        broker.close()
    assert broker.proc is not None and broker.proc.poll() is not None
    assert not accepts(broker.port)


async def test_link_says_when_no_broker_answers() -> None:
    broker = Mosquitto()  # never started: nothing listens on its port
    async with MqttLink(broker.url, "nobody-home", backoff_max=0.1) as link:
        with pytest.raises(BrokerError):
            await link.wait_connected(0.5)
    broker.close()


def test_context_manager_and_restart() -> None:
    with Mosquitto() as broker:
        first = broker.proc
        broker.restart()
        assert broker.proc is not first and broker.proc is not None and broker.proc.poll() is None
        assert accepts(broker.port)
