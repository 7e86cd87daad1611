"""A publish written to the socket where it is made, its acknowledgement a future.

aiomqtt's ``publish`` has paho queue the packet and watch the socket for writing: paho calls
aiomqtt back, which schedules ``add_writer`` with ``call_soon_threadsafe`` (a write to the loop's
self-pipe), and the packet leaves when the loop next finds the socket writable: two passes of the
loop after the publish, each a wait behind whatever else the loop has to do. Here the packet is
queued in paho (built by ``mqtt_packet.py``, or by paho's own ``publish`` where paho holds a message
back) and written at once by paho's packet writer (what aiomqtt's writer callback runs): what the
socket does not take now goes when it is writable, as any paho write. A job leaves the gateway, and
a worker's first audio leaves the worker, without waiting for the loop (issue 20).

The acknowledgement (QoS 1: the broker's PUBACK; QoS 0: written) is a future, set through
aiomqtt's table of pending publishes (its ``on_publish`` calls ``set``), or failed with
``BrokerError`` after ``timeout_s``, or with ``PubackLost`` as soon as its connection closes
(``connection_lost``: a wait for a PUBACK that cannot come held up every publish queued behind it
in the gateway's control queue, the jobs sent again on the next broker node included). This uses
paho's client (pinned in pyproject.toml) and aiomqtt's internals, as ``publish_batch.py`` does;
tests/broker/test_publish_now.py runs it on a real broker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomqtt
from paho.mqtt.client import PUBLISH, MQTTMessage, MQTTMessageInfo
from paho.mqtt.enums import MessageState, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .errors import BrokerError, PubackLost
from .mqtt_packet import publish_packet


def publish_started(
    client: aiomqtt.Client,
    topic: str,
    payload: bytes | str,
    *,
    qos: int,
    retain: bool = False,
    expiry_s: int | None = None,
    timeout_s: float,
) -> asyncio.Future[None]:
    """Publish, written now; the future of its acknowledgement. BrokerError if paho refuses it."""
    info = write_now(client, topic, payload, qos=qos, retain=retain, expiry_s=expiry_s)
    done = asyncio.get_running_loop().create_future()
    if info.is_published():  # QoS 0, written
        done.set_result(None)
    else:
        client._pending_publishes[info.mid] = Acked(client, info.mid, done, topic, timeout_s)
    return done


def write_now(
    client: aiomqtt.Client,
    topic: str,
    payload: bytes | str,
    *,
    qos: int,
    retain: bool = False,
    expiry_s: int | None = None,
) -> MQTTMessageInfo:
    """A publish, its packet written to the socket in this call: built here (``mqtt_packet.py``)
    and queued in paho as paho's ``publish`` queues it; paho's own ``publish`` where paho would
    hold it back (QoS 2, or as many QoS 1 messages in flight as it allows)."""
    paho = client._client
    data = payload.encode() if isinstance(payload, str) else payload
    name = topic.encode()
    if not name or b"+" in name or b"#" in name:
        raise ValueError(f"a publish needs a topic without wildcards: {topic!r}")
    if paho._sock is None:
        raise BrokerError(f"publish to {topic} failed: {MQTTErrorCode.MQTT_ERR_NO_CONN}")
    with writing_here(client):
        info = _queued_here(paho, name, data, qos=qos, retain=retain, expiry_s=expiry_s)
        if info is None:  # paho would hold it back: its own publish queues it
            info = paho.publish(topic, data, qos, retain, _properties(expiry_s))
    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise BrokerError(f"publish to {topic} failed: {info.rc}")
    write(client)
    return info


def _queued_here(
    paho: Any, name: bytes, data: bytes, *, qos: int, retain: bool, expiry_s: int | None
) -> MQTTMessageInfo | None:
    """The packet built here and queued in paho; None where paho would not send it now."""
    if qos == 0:
        info = MQTTMessageInfo(paho._mid_generate())
    elif qos == 1 and _room_in_flight(paho):
        info = _in_flight(paho, name, data, retain)
    else:
        return None
    packet = publish_packet(name, data, qos=qos, mid=info.mid, retain=retain, expiry_s=expiry_s)
    info.rc = paho._packet_queue(PUBLISH, b"".join(packet), info.mid, qos, info)
    return info


def _room_in_flight(paho: Any) -> bool:
    """paho sends a QoS 1 message at once while fewer than its limit are unacknowledged (0: no limit)."""
    limit = paho._max_inflight_messages
    return bool(limit == 0 or paho._inflight_messages < limit)


def _in_flight(paho: Any, name: bytes, data: bytes, retain: bool) -> MQTTMessageInfo:
    """A QoS 1 message entered in paho's table as its ``publish`` enters one: its PUBACK finds it
    there (paho then calls ``on_publish``, which sets aiomqtt's pending publish). Its properties are
    not kept: paho needs them only to send it again on the same client, and the link starts a new
    client for each connection."""
    message = MQTTMessage(paho._mid_generate(), name)
    message.timestamp = time.monotonic()
    message.payload, message.qos, message.retain, message.dup = data, 1, retain, False
    message.state = MessageState.MQTT_MS_WAIT_FOR_PUBACK
    with paho._out_message_mutex:
        paho._out_messages[message.mid] = message
        paho._inflight_messages += 1
    return message.info


def _properties(expiry_s: int | None) -> Properties | None:
    if expiry_s is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = expiry_s
    return props


class writing_here:  # a context manager named as the function it was
    """paho queues a packet without asking aiomqtt to watch the socket (its "writer registered"
    flag held up meanwhile): ``write`` writes it next. Otherwise aiomqtt's ``add_writer``, already
    scheduled, would come after the write and its unregistering: a writer on an always-writable
    socket, called on every pass of the loop for ever (a busy loop). A class, not a
    ``contextlib.contextmanager``: that one's generator cost ~30 us of a job's path after an idle
    spell (issue 20)."""

    __slots__ = ("_paho", "_registered")

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client

    def __enter__(self) -> None:
        self._registered = self._paho._registered_write
        self._paho._registered_write = True

    def __exit__(self, *_: object) -> None:
        self._paho._registered_write = self._registered


def write(client: aiomqtt.Client) -> None:
    """Write what paho holds now, as aiomqtt's writer callback would a pass or two of the loop
    later. paho's packet writer, not its ``loop_write``: that one also unregisters the writer when
    all is written, and an ``add_writer`` aiomqtt has already scheduled (for a PUBACK paho queued
    on a read) would then come after it and stay on the always-writable socket (a busy loop).
    Left alone, such a writer runs once, finds nothing and is unregistered by paho; what the socket
    does not take now, paho registers a writer for."""
    paho = client._client
    if not paho.want_write():
        return
    try:
        rc = paho._packet_write()
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            paho._loop_rc_handle(rc)  # as loop_write: the connection is lost
    except Exception as exc:  # as from aiomqtt's writer callback: its session ends with it
        if not client._disconnected.done():
            client._disconnected.set_exception(exc)
        raise BrokerError(f"write to the MQTT broker failed: {exc}") from exc
    if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
        raise BrokerError(f"write to the MQTT broker failed: {rc}")


class Acked(asyncio.Event):
    """A publish's acknowledgement (aiomqtt's ``on_publish`` calls ``set``), or BrokerError after
    ``timeout_s`` (a QoS 1 publish caught by a dropped connection would wait for ever)."""

    def __init__(
        self, client: aiomqtt.Client, mid: int, done: asyncio.Future[None], topic: str, timeout_s: float
    ) -> None:
        super().__init__()
        self.done = done
        self._timer = done.get_loop().call_later(timeout_s, self._late, client, mid, topic, timeout_s)

    def set(self) -> None:
        super().set()
        self._timer.cancel()
        if not self.done.done():
            self.done.set_result(None)

    def lost(self) -> None:
        self._timer.cancel()
        if not self.done.done():
            self.done.set_exception(PubackLost("the connection closed before the broker acknowledged"))

    def _late(self, client: aiomqtt.Client, mid: int, topic: str, timeout_s: float) -> None:
        client._pending_publishes.pop(mid, None)
        if not self.done.done():
            self.done.set_exception(BrokerError(f"publish to {topic} not acknowledged within {timeout_s}s"))


def connection_lost(client: aiomqtt.Client) -> None:
    """``client``'s connection closed: its publishes still waiting for a PUBACK fail now."""
    for pending in list(client._pending_publishes.values()):
        if isinstance(pending, Acked):
            pending.lost()
