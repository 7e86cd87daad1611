"""QoS 0 publishes written together: many MQTT v5 PUBLISH packets handed to paho as one write.

paho-mqtt writes each publish with its own ``send()``, watches the socket for writing again (two
epoll changes) and reports each one written through a callback; aiomqtt's ``publish`` adds an event,
a timeout and a task per message. For the gateway's per-frame copies of session audio and events
(``sessions/{id}/audio``, ``sessions/{id}/events``) that was about 40% of its CPU at 300 sessions.
Here the packets of a batch are encoded once, joined, and queued in paho as one outgoing entry:
paho writes it as it writes any packet (in pieces when the socket is full, in order with the rest)
and reports it written once. On the wire nothing changes: the same PUBLISH packets, back to back.

A batch is written to the socket at once, as every publish of ours (``publish_now.py``).

This uses paho's client internals (``_packet_queue``, ``_mid_generate``, ``_sock``: paho-mqtt is
pinned in pyproject.toml) and aiomqtt's table of pending publishes, as aiomqtt's ``publish`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import aiomqtt
from paho.mqtt.client import PUBLISH, MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode

from .errors import BrokerError
from .mqtt_packet import publish_packet
from .publish_now import write, writing_here


async def publish_qos0(
    client: aiomqtt.Client, messages: Sequence[tuple[str, bytes]], timeout_s: float
) -> None:
    """Publish ``messages`` (topic, payload) at QoS 0, in order, as one write; return once paho has
    written them all to the socket (``BrokerError`` if not connected or not within ``timeout_s``)."""
    paho = client._client
    if paho._sock is None:
        raise BrokerError("not connected to the MQTT broker")
    parts: list[bytes] = []
    for topic, payload in messages:
        parts += publish_packet(topic.encode(), payload, qos=0)
    mid = paho._mid_generate()
    written = asyncio.Event()
    client._pending_publishes[mid] = written  # set by aiomqtt's on_publish when paho wrote it
    try:
        # A memoryview: when the socket takes a batch in pieces, paho slices what is left of it
        # (``packet[pos:]``) for each send; a bytes object would be copied each time.
        blob = cast(bytes, memoryview(b"".join(parts)))
        with writing_here(client):
            rc = paho._packet_queue(PUBLISH, blob, mid, 0, MQTTMessageInfo(mid))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish of {len(messages)} messages failed: {rc}")
        write(client)
        async with asyncio.timeout(timeout_s):
            await written.wait()
    except TimeoutError as exc:
        raise BrokerError(f"{len(messages)} publishes not written within {timeout_s}s") from exc
    finally:
        client._pending_publishes.pop(mid, None)
