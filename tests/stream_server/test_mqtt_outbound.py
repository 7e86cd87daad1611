"""The gateway's MQTT publishes (stream_server/mqtt/outbound.py) in-process: a job is written where
it is made, with no pass of the loop for the control task; one queued behind another keeps its place."""

from __future__ import annotations

from dataclasses import replace

from broker import topics
from broker.messages import Heartbeat, Job, worker_messages
from broker.ws_protocol import Speak
from stream_server.config import GatewayConfig
from stream_server.core.failover import FailoverConfig
from stream_server.hub.hub import Hub
from stream_server.mqtt.outbound import Publish
from synth_worker.voices import VoiceMap
from tests.conftest import T
from tests.support.memlink import MemoryLink

GW = "gw-out"


def config() -> GatewayConfig:
    base = GatewayConfig.from_env({"SESAME_GATEWAY_ID": GW, "SESAME_TIERS": "workers"})
    fo = FailoverConfig(tiers=("workers",), max_retries=0)
    return replace(base, failover=fo, cache_enabled=False, publish_session_events=False, preload_phrases=())


def heartbeat() -> bytes:
    return Heartbeat("w1", 1, "ready", "bark", "m", 1, 0.0, 60.0).to_bytes()


def jobs(link: MemoryLink) -> list[Job]:
    decoded = [worker_messages.decode(p.payload) for p in link.published if p.topic.endswith("/jobs")]
    return [j for j in decoded if isinstance(j, Job)]


async def test_a_job_is_published_in_the_call_that_makes_it() -> None:
    mqtt = MemoryLink(GW)
    async with Hub(config(), VoiceMap.load(None, "maya"), {}, link=mqtt) as hub:
        await mqtt.deliver(topics.worker_heartbeat("w1"), heartbeat())
        session = hub.open_session()
        hub.receive(session, Speak("Written at once."))
        # no await since the speak: the control task has not run
        assert [j.text for j in jobs(mqtt)] == ["Written at once."]
        assert mqtt.published[-1].qos == 1 and mqtt.published[-1].expiry_s is not None
        # the control task only awaits its acknowledgement: a publish queued after it comes next,
        # and the job is not published again
        mqtt.hold.clear()
        hub.out.send(Publish(topics.CANCEL, b"after", 1))
        mqtt.hold.set()
        await mqtt.wait_for(lambda p: p.payload == b"after", T)
        assert len(jobs(mqtt)) == 1


async def test_a_job_behind_a_queued_publish_waits_its_turn() -> None:
    mqtt = MemoryLink(GW)
    async with Hub(config(), VoiceMap.load(None, "maya"), {}, link=mqtt) as hub:
        await mqtt.deliver(topics.worker_heartbeat("w1"), heartbeat())
        mqtt.hold.clear()  # the broker takes nothing: the first publish stays queued
        hub.out.send(Publish(topics.CANCEL, b"first", 1))
        session = hub.open_session()
        hub.receive(session, Speak("Second in line."))
        assert jobs(mqtt) == []  # not ahead of the queued cancel
        mqtt.hold.set()
        await mqtt.wait_for(lambda p: p.topic.endswith("/jobs"), T)
        order = [p.topic for p in mqtt.published]
        assert order.index(topics.CANCEL) < next(i for i, t in enumerate(order) if t.endswith("/jobs"))
