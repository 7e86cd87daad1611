"""Sessions over MQTT alone, driven only by mosquitto_pub and heard only on mosquitto_sub, with two
gateways on one broker: exactly one takes each session and the other stays quiet."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from broker.audio import AudioFrame
from broker.launcher import Mosquitto, free_port
from tests.conftest import Service, T
from tests.support.localstack import Event, Proc

ENV = {"SESAME_TIERS": "espeak-ng", "SESAME_CACHE_ENABLED": "false"}


@dataclass
class Gateways:
    broker: Mosquitto
    a: Service
    b: Proc

    def logs(self, event: str, session_id: str) -> list[Event]:
        return [
            e
            for proc in (self.a.gateway, self.b)
            for e in proc.events()
            if e.get("event") == event and e.get("session_id") == session_id
        ]


@pytest.fixture(scope="module")
def gateways() -> Iterator[Gateways]:
    with Mosquitto() as broker:
        a = Service(broker, None, {**ENV, "SESAME_GATEWAY_ID": "gw-a"})
        b = Proc(
            ["gateway"],
            {**a.env, **ENV, "SESAME_GATEWAY_ID": "gw-b", "SESAME_PORT": str(free_port())},
            "gateway-b",
        )
        try:
            b.wait_event("gateway_listening", 6 * T)
            yield Gateways(broker, a, b)
        finally:
            b.stop()
            a.close()


class Sub:
    """mosquitto_sub printing each message as 'MSG topic hexpayload'."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, broker: Mosquitto, *topics: str) -> Sub:
        args = ["-d", "-F", "MSG %t %x"]
        for topic in topics:
            args += ["-t", topic]
        proc = await asyncio.create_subprocess_exec(
            "stdbuf",
            "-oL",
            "mosquitto_sub",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=as_device(broker),
        )
        sub = cls(proc)
        async with asyncio.timeout(2 * T):
            while b"SUBACK" not in await sub._line():
                pass
        return sub

    async def _line(self) -> bytes:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise EOFError("mosquitto_sub exited")
        return line

    async def next(self) -> tuple[str, bytes]:
        while True:
            line = (await self._line()).decode().strip()
            if line.startswith("MSG "):
                _, topic, *payload = line.split(" ")
                return topic, bytes.fromhex(payload[0] if payload else "")

    async def events_until(
        self,
        kind: str,
        timeout: float,  # noqa: ASYNC109
    ) -> tuple[list[dict[str, object]], list[AudioFrame]]:
        events: list[dict[str, object]] = []
        frames: list[AudioFrame] = []
        async with asyncio.timeout(timeout):
            while True:
                topic, payload = await self.next()
                if topic.endswith("/audio"):
                    frames.append(AudioFrame.from_bytes(payload))
                    continue
                events.append(json.loads(payload))
                if events[-1]["type"] == kind:
                    return events, frames

    async def close(self) -> None:
        self.proc.terminate()
        await self.proc.wait()


def as_device(broker: Mosquitto) -> dict[str, str]:
    """mosquitto_sub/pub as the ``device`` role, its password in an options file (as README shows)."""
    home = broker.credentials.client_options("device", "127.0.0.1", broker.port)
    return {**os.environ, "XDG_CONFIG_HOME": str(home)}


async def pub(broker: Mosquitto, session_id: str, kind: str, payload: str | None = None) -> None:
    topic = f"sesame/v1/sessions/{session_id}/{kind}"
    body = ["-n"] if payload is None else ["-m", payload]
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-q", "1", "-t", topic, *body, env=as_device(broker)
    )
    assert await proc.wait() == 0


async def test_a_session_driven_by_mosquitto_pub_is_heard_on_mosquitto_sub(gateways: Gateways) -> None:
    broker = gateways.broker
    sub = await Sub.start(broker, "sesame/v1/sessions/dev1/events", "sesame/v1/sessions/dev1/audio")
    try:
        await pub(broker, "dev1", "open", '{"type":"open","voice":"maya"}')
        ready, _ = await sub.events_until("ready", 4 * T)
        assert ready[-1]["session_id"] == "dev1" and ready[-1]["sample_rate"] == 24000
        await pub(broker, "dev1", "text", '{"type":"text","text":"Hello there. How are"}')
        await pub(broker, "dev1", "text", '{"type":"text","text":" you?"}')
        await pub(broker, "dev1", "flush")
        events, frames = await sub.events_until("turn_end", 8 * T)
    finally:
        await sub.close()
    starts = [e for e in events if e["type"] == "sentence_start"]
    ends = [e for e in events if e["type"] == "sentence_end"]
    assert [s["text"] for s in starts] == ["Hello there.", "How are you?"]
    assert all(s["engine"] == "espeak-ng" for s in starts)
    for end in ends:
        samples = sum(f.samples for f in frames if f.seq == end["seq"])
        assert samples == end["samples"] > 2400
    # exactly one gateway took it
    assert len(gateways.logs("mqtt_session_opened", "dev1")) == 1


async def test_the_other_gateway_stays_quiet_and_an_unclaimed_session_is_unknown(gateways: Gateways) -> None:
    broker = gateways.broker
    sub = await Sub.start(broker, "sesame/v1/sessions/dev2/events")
    try:
        await pub(broker, "dev2", "open")
        await sub.events_until("ready", 4 * T)
    finally:
        await sub.close()
    for i in range(5):
        await pub(broker, "dev2", "text", json.dumps({"type": "text", "text": f"Line {i}."}))
    await pub(broker, "nobody", "text", '{"type":"text","text":"Is anyone there?"}')
    # Both gateways count text for a session nobody holds, after the claim window...
    for proc in (gateways.a.gateway, gateways.b):
        await asyncio.to_thread(
            proc.wait_for,
            lambda e: e.get("event") == "bad_mqtt_payload" and e.get("session_id") == "nobody",
            4 * T,
            "unknown_session for nobody",
        )
    # ...and neither counted the other's session, whose text came first.
    assert gateways.logs("bad_mqtt_payload", "dev2") == []
    assert gateways.logs("bad_mqtt_payload", "dev1") == []
    assert len(gateways.logs("mqtt_session_opened", "dev2")) == 1


async def test_cancel_and_close_over_mqtt(gateways: Gateways) -> None:
    broker = gateways.broker
    sub = await Sub.start(broker, "sesame/v1/sessions/dev3/events")
    try:
        await pub(broker, "dev3", "open")
        await sub.events_until("ready", 4 * T)
        long_text = " ".join(f"This is sentence number {i}." for i in range(30))
        await pub(broker, "dev3", "text", json.dumps({"type": "text", "text": long_text, "flush": True}))
        await sub.events_until("sentence_start", 8 * T)
        await pub(broker, "dev3", "cancel")
        events, _ = await sub.events_until("cancelled", 4 * T)
        await pub(broker, "dev3", "close")
    finally:
        await sub.close()
    assert events[-1]["type"] == "cancelled"
    closed = await asyncio.to_thread(
        lambda: [
            p.wait_for(lambda e: e.get("event") == "session_closed" and e.get("session_id") == "dev3", 4 * T)
            for p in (gateways.a.gateway, gateways.b)
            if any(
                e.get("event") == "mqtt_session_opened" and e.get("session_id") == "dev3" for e in p.events()
            )
        ]
    )
    assert [c["reason"] for c in closed] == ["mqtt_close"]


async def test_bad_input_over_mqtt_is_an_error_event(gateways: Gateways) -> None:
    broker = gateways.broker
    sub = await Sub.start(broker, "sesame/v1/sessions/dev4/events")
    try:
        await pub(broker, "dev4", "open", '{"type":"open","sample_rate":5}')
        refused, _ = await sub.events_until("error", 4 * T)
        await pub(broker, "dev4", "open", '{"type":"open","voice":"v2/fr_speaker_2"}')
        ready, _ = await sub.events_until("ready", 4 * T)
        await pub(broker, "dev4", "text", '{"type":"text","text":5}')
        bad_text, _ = await sub.events_until("error", 4 * T)
        await pub(broker, "dev4", "close")
    finally:
        await sub.close()
    assert refused[-1]["code"] == "bad_sample_rate"
    assert ready[-1]["voice"] == "v2/fr_speaker_2"
    assert bad_text[-1]["code"] == "bad_field"
