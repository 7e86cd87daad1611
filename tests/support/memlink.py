"""An in-memory MQTT link for in-process tests of the gateway's adapter.

It is the real ``MqttLink`` with the network taken out: ``publish`` records (or fails with
``BrokerError`` while "disconnected", as the real one does), ``deliver`` hands a message to the
owner's ``on_message_now`` or ``on_message``, ``reconnect`` runs ``on_connect``. Waits are on an
event, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from broker.errors import BrokerError
from broker.link import MqttLink
from broker.settings import MqttUrl


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    payload: bytes
    qos: int
    expiry_s: int | None


class MemoryLink(MqttLink):
    def __init__(self, client_id: str = "memory") -> None:
        super().__init__(MqttUrl.parse("mqtt://127.0.0.1:1"), client_id)
        self.published: list[Published] = []
        self.changed = asyncio.Event()
        self.hold = asyncio.Event()  # cleared: publishes wait (a slow broker)
        self.hold.set()
        self.failures = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MqttLink]:
        self.node = self.nodes.first
        self.connected.set()
        try:
            yield self
        finally:
            self.connected.clear()
            self.node = None

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        await self.hold.wait()
        if not self.connected.is_set():
            self.failures += 1
            self.changed.set()
            raise BrokerError("not connected to the MQTT broker")
        data = payload.encode() if isinstance(payload, str) else payload
        self.published.append(Published(topic, data, qos, expiry_s))
        self.changed.set()

    def publish_now(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> asyncio.Future[None]:
        """Recorded in this call, as the real link writes it (``hold`` cleared: once it is set, as
        ``publish``); BrokerError at once when not connected, as the real link."""
        if not self.connected.is_set():
            self.failures += 1
            self.changed.set()
            raise BrokerError("not connected to the MQTT broker")
        if not self.hold.is_set():
            held = self.publish(topic, payload, qos=qos, retain=retain, expiry_s=expiry_s)
            return asyncio.ensure_future(held)
        data = payload.encode() if isinstance(payload, str) else payload
        self.published.append(Published(topic, data, qos, expiry_s))
        self.changed.set()
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        written.set_result(None)
        return written

    async def publish_batch(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for topic, payload in messages:  # recorded one by one, as the broker hands them on
            await self.publish(topic, payload, qos=0)

    async def deliver(self, topic: str, payload: bytes) -> None:
        if self.on_message_now is not None:  # the gateway's: handled in the read
            self.on_message_now(topic, payload)
            return
        assert self.on_message is not None
        await self.on_message(topic, payload)

    def disconnect(self) -> None:
        self.connected.clear()
        self.node = None

    async def reconnect(self) -> None:
        self.node = self.nodes.first
        self.connected.set()
        if self.on_connect is not None:
            await self.on_connect(self)

    async def wait_for(self, predicate: Callable[[Published], bool], within_s: float) -> Published:
        """The first publish that satisfies ``predicate``, waiting up to ``within_s``."""
        async with asyncio.timeout(within_s):
            while True:
                for item in self.published:
                    if predicate(item):
                        return item
                self.changed.clear()
                await self.changed.wait()

    async def wait_until(self, condition: Callable[[], bool], within_s: float) -> None:
        """Until ``condition()`` holds, checked after every publish attempt (made or failed)."""
        async with asyncio.timeout(within_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()
