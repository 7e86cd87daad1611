"""The MQTT edge: one aiomqtt client (MQTT v5) that reconnects on its own, to any node of a cluster.

``MqttLink`` is an async context manager owning one named task, in its own TaskGroup. Inside, it
connects, subscribes, runs ``on_connect`` (a worker republishes its retained status there, a
gateway its claims), and hands every incoming message to ``on_message`` (``on_message_now``: in
the read that brings it, read_now.py). A handler that raises is logged: one bad payload never
stops the link.

Broker nodes (``SESAME_MQTT_URL=mqtt://a:1883,mqtt://b:1883``) are tried in order: a node that
refuses the connection, or whose connection drops, is left for the next one, with jittered
exponential backoff between tries (reset once a connection holds). ``node`` is the node in use
(``None`` between connections). Each connection subscribes afresh and reads the SUBACK: aiomqtt's
``subscribe()`` does not raise on a refused subscription, so a reason code of 0x80 or more is
logged and kept in ``refused`` (topic -> code) for ``on_connect`` to act on (a broker without
shared subscriptions refuses ``$share/...`` with 0x9E).

``backlog()`` says how much has arrived and is not read yet (messages queued in the client, bytes
in the socket), ``read_through(now)`` up to when everything that arrived has been read (on the
monotonic clock), and ``on_caught_up`` is called each time a handled message leaves nothing unread
(the gateway judges a worker's silence only so).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType

import aiomqtt

from . import logs
from .errors import BrokerError
from .publish_batch import publish_qos0
from .publish_now import connection_lost, publish_started
from .read_now import payload_bytes, read_here, unread_bytes, until_disconnected
from .settings import MqttNodes, MqttUrl

OnMessage = Callable[[str, bytes], Awaitable[None]]
OnMessageNow = Callable[[str, bytes], None]
OnConnect = Callable[["MqttLink"], Awaitable[None]]
OnDisconnect = Callable[[], None]
OnCaughtUp = Callable[[], None]

log = logs.get("sesame.mqtt")


class Will:
    def __init__(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        self.topic, self.payload, self.qos, self.retain = topic, payload, qos, retain


class MqttLink:
    def __init__(
        self,
        url: MqttUrl | MqttNodes,
        client_id: str,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: OnMessage | None = None,
        on_connect: OnConnect | None = None,
        on_disconnect: OnDisconnect | None = None,
        on_caught_up: OnCaughtUp | None = None,
        will: Will | None = None,
        keepalive: int = 5,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        publish_timeout_s: float = 2.0,
    ) -> None:
        self.nodes = MqttNodes.of(url)
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_message_now: OnMessageNow | None = None  # or this, in the read itself (read_now.py)
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect  # called (synchronously) when a connection is lost
        self.on_caught_up = on_caught_up  # called (synchronously) when a message left nothing unread
        self._caught_up_at = time.monotonic()
        self.lost_at = self._caught_up_at  # when the last connection was lost (monotonic)
        self.will = will
        self.keepalive = keepalive
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.publish_timeout_s = publish_timeout_s
        self.connected = asyncio.Event()
        self.connects = 0
        self.node: MqttUrl | None = None  # the broker node of the current connection
        self.refused: dict[str, int] = {}  # topic -> SUBACK reason code, on the current connection
        self._next = 0  # index in nodes of the node to try next
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stack: contextlib.AsyncExitStack | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MqttLink]:
        """The link's connection task, in a TaskGroup; cancelled and awaited on the way out."""
        self._closing = False
        async with asyncio.TaskGroup() as tg:
            self._task = tg.create_task(self._run(), name=f"mqtt-link:{self.client_id}")
            try:
                yield self
            finally:
                await self.close()

    async def __aenter__(self) -> MqttLink:
        self._stack = contextlib.AsyncExitStack()
        return await self._stack.enter_async_context(self.running())

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(et, e, tb)

    async def wait_connected(self, within_s: float) -> None:
        try:
            async with asyncio.timeout(within_s):
                await self.connected.wait()
        except TimeoutError as exc:
            raise BrokerError(f"no MQTT connection to {self.nodes} within {within_s}s") from exc

    async def close(self) -> None:
        """Disconnect cleanly (a clean disconnect does not fire the last will), within a bound:
        aiomqtt waits for its DISCONNECT to be written without one (queued behind every publish
        not yet sent), so after ``publish_timeout_s`` + 1 s the connection is dropped instead
        (``mqtt_disconnect_timeout``; the broker then says the last will)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            _, pending = await asyncio.wait([task], timeout=self.publish_timeout_s + 1.0)
            if pending:
                log.warning(
                    "mqtt_disconnect_timeout", client_id=self.client_id, waited_s=self.publish_timeout_s + 1.0
                )
                task.cancel()
                await asyncio.wait([task], timeout=1.0)
        self.connected.clear()

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        await self.publish_now(topic, payload, qos=qos, retain=retain, expiry_s=expiry_s)

    def publish_now(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> asyncio.Future[None]:
        """Write the message to the socket now (``publish_now.py``); return the wait for it to be
        done (QoS 1: the broker's PUBACK; QoS 0: written), BrokerError after ``publish_timeout_s``
        (a QoS 1 publish caught by a dropped connection would wait for its PUBACK forever, and
        hold up every publish queued behind it). BrokerError at once when not connected."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise BrokerError("not connected to the MQTT broker")
        return publish_started(
            client,
            topic,
            payload,
            qos=qos,
            retain=retain,
            expiry_s=None if expiry_s is None else max(1, int(expiry_s)),
            timeout_s=self.publish_timeout_s,
        )

    async def publish_batch(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """QoS 0 (topic, payload) messages in one write (``publish_batch.py``); returns once written."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise BrokerError("not connected to the MQTT broker")
        await publish_qos0(client, messages, self.publish_timeout_s)

    def backlog(self) -> int:
        """Messages received and not yet handed to ``on_message`` plus unread bytes in the socket
        (0 when not connected)."""
        client = self._client
        return 0 if client is None else (len(client.messages) or unread_bytes(client))

    def read_through(self, now: float) -> float:
        """Everything that arrived before the returned time has been read: ``now`` when nothing
        waits unread, else when the reader last had nothing unread. While not connected, when the
        connection was lost: nothing sent to us since has been heard."""
        if not self.connected.is_set():
            return min(now, self.lost_at)
        return now if not self.backlog() else min(now, self._caught_up_at)

    async def subscribe(self, topic: str, qos: int, *, instead_of: str | None = None) -> int:
        """Subscribe on this connection and on every later one (in place of ``instead_of``, which
        is dropped from the list). Returns the SUBACK reason code (0x80 or more: refused)."""
        self.subscriptions = [(t, q) for t, q in self.subscriptions if t not in (topic, instead_of)]
        self.subscriptions.append((topic, qos))
        self.refused.pop(instead_of or topic, None)
        client = self._client
        if client is None or not self.connected.is_set():
            raise BrokerError("not connected to the MQTT broker")
        try:
            return await self._subscribe(client, topic, qos)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"subscribe to {topic} failed: {exc}") from exc

    async def _subscribe(self, client: aiomqtt.Client, topic: str, qos: int) -> int:
        code = _suback_code(await client.subscribe(topic, qos=qos))
        if code >= 0x80:
            self.refused[topic] = code
            log.warning(
                "mqtt_subscription_refused", topic=topic, reason_code=hex(code), broker=str(self.node)
            )
        return code

    async def _run(self) -> None:
        delay = self.backoff_initial
        while not self._closing:
            node = self.nodes.urls[self._next % len(self.nodes)]
            connects = self.connects
            try:
                await self._session(node)
                delay = self.backoff_initial
            except (aiomqtt.MqttError, BrokerError) as exc:
                log.warning(
                    "mqtt_disconnected",
                    client_id=self.client_id,
                    broker=str(node),
                    error=str(exc),
                    retry_in_s=round(delay, 3),
                )
            except Exception:  # whatever broke this connection, the link must come back
                log.exception(
                    "mqtt_session_failed",
                    client_id=self.client_id,
                    broker=str(node),
                    retry_in_s=round(delay, 3),
                )
            finally:
                self._lost(self._client)
                self._client = None
                self.node = None
                if self.connects > connects:
                    delay = self.backoff_initial  # a connection held: a drop starts the backoff anew
            if self._closing:
                return
            # A node that failed or dropped us is left for the next one (a dead cluster node).
            self._next = (self._next + 1) % len(self.nodes)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jittered exponential backoff
            delay = min(self.backoff_max, delay * 2)

    async def _session(self, node: MqttUrl) -> None:
        will = None
        if self.will is not None:
            will = aiomqtt.Will(
                self.will.topic, self.will.payload, qos=self.will.qos, retain=self.will.retain
            )
        client = aiomqtt.Client(
            node.host,
            node.port,
            username=node.username,
            password=node.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            keepalive=self.keepalive,
            timeout=5,
            max_queued_incoming_messages=100_000,
            # Without TCP_NODELAY every small publish waits on Nagle + delayed ACK: ~40 ms a hop,
            # measured in bench/gateway_overhead.py.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # Bursts of audio publishes are expected; aiomqtt's warning about them would flood logs.
        client.pending_calls_threshold = 1_000_000
        try:
            await self._connected(client, node)
        finally:
            connection_lost(client)  # its PUBACKs cannot come now

    def _lost(self, client: aiomqtt.Client | None) -> None:
        """``client``'s connection is gone: said once, as soon as it is known (its disconnect
        future, or the read that met it: read_now.py), so that nothing is published into it meanwhile
        and the publishers' wait for the next node starts then (the gateway's ``MqttOut``)."""
        if client is self._client and self.connected.is_set():
            self.connected.clear()
            self.lost_at = time.monotonic()
            if self.on_disconnect is not None:
                self.on_disconnect()

    async def _connected(self, client: aiomqtt.Client, node: MqttUrl) -> None:
        async with client:
            self._client = client
            client._disconnected.add_done_callback(lambda _: self._lost(client))
            self.node = node
            self.refused = {}
            for topic, qos in list(self.subscriptions):
                await self._subscribe(client, topic, qos)
            self.connects += 1
            self.connected.set()
            log.info("mqtt_connected", client_id=self.client_id, broker=str(node), connects=self.connects)
            if self.on_connect is not None:
                await self.on_connect(self)
            if (now := self.on_message_now) is not None:  # handed over in the read (read_now.py)
                read_here(client, lambda message: self._hand_over(now, message), lambda: self._lost(client))
                await until_disconnected(client)
            async for message in client.messages:
                if self.on_message is None:
                    continue
                try:
                    await self.on_message(message.topic.value, payload_bytes(message))
                except asyncio.CancelledError:
                    raise
                except Exception:  # one bad message never stops the link
                    log.exception("mqtt_handler_failed", topic=message.topic.value)
                self._handled()

    def _hand_over(self, handle: OnMessageNow, message: aiomqtt.Message) -> None:
        try:
            handle(message.topic.value, payload_bytes(message))
        except Exception:  # one bad message never stops the link
            log.exception("mqtt_handler_failed", topic=message.topic.value)
        self._handled()

    def _handled(self) -> None:
        if not self.backlog():
            self._caught_up_at = time.monotonic()
            if self.on_caught_up is not None:
                self.on_caught_up()


def _suback_code(granted: Sequence[object]) -> int:
    """The worst reason code of a SUBACK (MQTT v5 ``ReasonCode`` objects, or v3 granted QoS ints,
    where 0x80 is the refusal)."""
    codes = [value if isinstance(value, int) else int(getattr(value, "value", 0x80)) for value in granted]
    return max(codes, default=0x80)
