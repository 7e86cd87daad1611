"""PUBLISH packets built by broker/mqtt_packet.py are the bytes paho-mqtt builds for the same
publish (QoS 0 and 1, retained or not, with a message expiry or none, empty to multi-megabyte
payloads), and publish_now's packets, queued in paho by hand, keep paho's bookkeeping: on a real
mosquitto the subscriber sees the expiry, every PUBACK settles its future, and past paho's limit
of messages in flight paho's own queue takes over, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.client import Client, MQTTv5
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import topics
from broker.launcher import Mosquitto, free_port
from broker.link import MqttLink
from broker.mqtt_packet import connack_reason, connect_packet, publish_packet
from tests.conftest import T

USER = "w-packet"
TOPIC = topics.worker_status(USER)  # the production ACL lets a worker write and read it


def pahos_packet(
    topic: bytes, payload: bytes, *, qos: int, mid: int, retain: bool, expiry_s: int | None
) -> bytes:
    """What paho's own publish path queues for the socket."""
    paho = Client(CallbackAPIVersion.VERSION2, protocol=MQTTv5)
    paho._sock = object()  # type: ignore[assignment]  # "connected": _send_publish builds the packet
    queued: list[bytes] = []

    def capture(_command: int, packet: bytes, *_args: Any) -> MQTTErrorCode:
        queued.append(bytes(packet))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    paho._packet_queue = capture  # type: ignore[method-assign]
    props = None
    if expiry_s is not None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = expiry_s
    paho._send_publish(mid, topic, payload, qos, retain, False, None, props)
    paho._sock = None
    return queued[0]


@pytest.mark.parametrize("size", [0, 1, 121, 122, 16_500, 2_100_000])
@pytest.mark.parametrize(
    ("qos", "retain", "expiry_s"), [(0, False, None), (1, False, 7), (1, True, None), (0, True, 86_400)]
)
def test_a_packet_is_the_bytes_paho_builds(size: int, qos: int, retain: bool, expiry_s: int | None) -> None:
    topic, payload, mid = b"gw/g1/jobs/w-1", bytes(range(256)) * (size // 256) + b"x" * (size % 256), 4097
    ours = b"".join(publish_packet(topic, payload, qos=qos, mid=mid, retain=retain, expiry_s=expiry_s))
    assert ours == pahos_packet(topic, payload, qos=qos, mid=mid, retain=retain, expiry_s=expiry_s)


def test_the_fixed_header_carries_the_remaining_length_as_a_varint() -> None:
    parts = publish_packet(b"a/b", b"x" * 200, qos=0)
    assert parts[0] == bytes((0x30, 0xCE, 0x01))  # 2 + 3 + 1 + 200 = 206 = 78 + 1 * 128
    assert parts[1:] == [b"\x00\x03", b"a/b", b"", b"\x00", b"x" * 200]
    assert publish_packet(b"t", b"", qos=0)[0] == b"\x30\x04"


async def test_published_now_the_expiry_arrives_each_puback_settles_and_paho_queues_past_its_limit() -> None:
    with Mosquitto() as broker:
        url = broker.url_for(USER)
        reader = aiomqtt.Client(
            url.host, url.port, username=url.username, password=url.password,
            identifier=f"packet-r-{free_port()}", protocol=aiomqtt.ProtocolVersion.V5,
        )  # fmt: skip
        async with reader, MqttLink(url, f"packet-w-{free_port()}") as link:
            await reader.subscribe(TOPIC, qos=1)
            await link.wait_connected(4 * T)
            assert link._client is not None
            paho = link._client._client
            paho._max_inflight_messages = 2  # the third waits in paho's queue for a PUBACK
            done = [link.publish_now(TOPIC, f"{i}".encode(), qos=1, expiry_s=60 + i) for i in range(5)]
            assert len(paho._out_messages) == 5 and paho._inflight_messages == 2
            async with asyncio.timeout(4 * T):
                await asyncio.gather(*done)
                got = [await anext(reader.messages) for _ in range(5)]
            assert not paho._out_messages and paho._inflight_messages == 0
        assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]
        # the broker hands on what is left of each expiry: at most what was sent, not none
        expiries = [getattr(m.properties, "MessageExpiryInterval", None) for m in got]
        assert all(e is not None and 60 + i - 5 <= e <= 60 + i for i, e in enumerate(expiries)), expiries


def test_connack_reason_waits_for_its_byte_and_reads_accepted_and_refused() -> None:
    accepted = bytes((0x20, 3, 0, 0, 0))  # CONNACK, flags 0, reason 0, no properties
    refused = bytes((0x20, 3, 0, 0x86, 0))  # bad user name or password
    assert [connack_reason(accepted[:n]) for n in range(4)] == [None, None, None, None]
    assert connack_reason(accepted) == 0
    assert connack_reason(refused) == 0x86
    assert connack_reason(bytes((0x20, 0x80, 0x01, 0, 0x87))) == 0x87  # a two-byte length
    with pytest.raises(ValueError, match="not a CONNACK"):
        connack_reason(bytes((0x30, 0)))


def test_connect_packet_parses_as_a_v5_connect_with_user_and_password() -> None:
    packet = connect_packet("w-1", "pässword")
    assert packet[0] == 0x10 and packet[1] == len(packet) - 2
    body = packet[2:]
    assert body[:6] == b"\x00\x04MQTT" and body[6] == 5  # protocol name and level 5
    assert body[7] == 0xC2  # user name, password, clean start
    assert body[10] == 0  # no properties
    rest = body[11:]
    fields = []
    while rest:
        n = int.from_bytes(rest[:2], "big")
        fields.append(rest[2 : 2 + n].decode())
        rest = rest[2 + n :]
    assert fields == ["", "w-1", "pässword"]  # the broker names the client
