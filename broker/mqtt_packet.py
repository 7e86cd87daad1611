"""MQTT v5 PUBLISH packets built here, byte for byte as paho-mqtt builds them; and the CONNECT
and CONNACK of the broker-user probe (``user_probe.py``).

paho's ``publish`` checks the topic, wraps the payload, logs, packs a ``Properties`` object and
copies the payload into a bytearray: about 130 us of the gateway's path from a client's text frame
to its job on the wire, the most of anything after the segmenter (issue 20, docs/benchmarks.md).
The one property the project sends is the message expiry (a job outlives its deadline on no
queue), a fixed five bytes. ``publish_now.py`` and ``publish_batch.py`` queue what is built here in
paho as paho queues its own packets; tests/broker/test_mqtt_packet.py compares it with paho's.
"""

from __future__ import annotations

import struct

PUBLISH = 0x30  # the packet type in the fixed header's first byte; DUP 0
NO_PROPERTIES = b"\x00"  # property length 0
MESSAGE_EXPIRY = 0x02  # property identifier: a four-byte integer of seconds


def publish_packet(
    topic: bytes, payload: bytes, *, qos: int, mid: int = 0, retain: bool = False, expiry_s: int | None = None
) -> list[bytes]:
    """The parts of one PUBLISH packet (``mid``: the packet identifier, QoS 1 and 2 only)."""
    # struct, not int.to_bytes per field: fewer calls, ~10 us less of a job's path after an idle
    # spell (issue 20).
    properties = NO_PROPERTIES if expiry_s is None else _EXPIRY.pack(5, MESSAGE_EXPIRY, expiry_s)
    packet_id = _U16.pack(mid) if qos else b""
    length = 2 + len(topic) + len(packet_id) + len(properties) + len(payload)
    return [
        varint_after(PUBLISH | qos << 1 | retain, length),
        _U16.pack(len(topic)),
        topic,
        packet_id,
        properties,
        payload,
    ]


_U16 = struct.Struct(">H")
_EXPIRY = struct.Struct(">BBI")  # property length 5, the identifier, four bytes of seconds


def varint_after(first: int, n: int) -> bytes:
    """``first`` and then ``n`` as MQTT's variable byte integer (the fixed header)."""
    if n < 0x80:
        return bytes((first, n))
    if n < 0x4000:
        return bytes((first, n & 0x7F | 0x80, n >> 7))
    out = bytearray((first,))
    while True:
        n, digit = divmod(n, 128)
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


CONNECT = 0x10
CONNACK = 0x20
CONNECT_FLAGS = 0x80 | 0x40 | 0x02  # user name, password, clean start
PROBE_KEEPALIVE_S = 10


def connect_packet(username: str, password: str) -> bytes:
    """An MQTT v5 CONNECT with an empty client id (the broker names it: it never takes over a
    session of the user's real client) and ``username``/``password``."""

    def field(text: str) -> bytes:
        raw = text.encode()
        return len(raw).to_bytes(2, "big") + raw

    body = (
        field("MQTT")
        + bytes((5, CONNECT_FLAGS))
        + PROBE_KEEPALIVE_S.to_bytes(2, "big")
        + NO_PROPERTIES
        + field("")
        + field(username)
        + field(password)
    )
    return varint_after(CONNECT, len(body)) + body


def connack_reason(data: bytes) -> int | None:
    """The reason code of the CONNACK that ``data`` begins with (0: accepted), or None while
    ``data`` is too short to hold it. ValueError when ``data`` is not a CONNACK."""
    if not data:
        return None
    if data[0] != CONNACK:
        raise ValueError(f"not a CONNACK: first byte {data[0]:#04x}")
    at = 1
    while at < len(data) and data[at] & 0x80:  # the remaining length's variable byte integer
        at += 1
    reason_at = at + 2  # after the length's last byte: the acknowledge flags, then the reason
    return data[reason_at] if reason_at < len(data) else None
