"""The gateway's MQTT publishes (stream_server/mqtt/outbound.py) in-process: a job is written where
it is made, with no pass of the loop for the control task; one queued behind another keeps its place;
jobs made together all leave at once; a PUBACK lost with its connection fails no job."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from broker import topics
from broker.errors import BrokerError, PubackLost
from broker.messages import Heartbeat, Job, worker_messages
from broker.ws_protocol import Speak
from stream_server.config import GatewayConfig
from stream_server.core.failover import FailoverConfig
from stream_server.hub.hub import Hub
from stream_server.monitoring.metrics import Metrics
from stream_server.mqtt.outbound import MqttOut, Publish
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
        # its acknowledgement settles it: a publish made after it comes next, and the job is not
        # published again
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


class AcksByHand(MemoryLink):
    """Each publish written at once; its acknowledgement is a future the test settles."""

    def __init__(self) -> None:
        super().__init__(GW)
        self.connected.set()
        self.acks: list[asyncio.Future[None]] = []
        self.written: list[str] = []
        self.wrote = asyncio.Event()

    def publish_now(self, topic: str, payload: bytes | str, **kw: Any) -> asyncio.Future[None]:
        self.written.append(topic)
        self.wrote.set()
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


async def test_jobs_made_in_one_pass_all_leave_at_once_and_a_lost_puback_fails_none() -> None:
    """Two sessions' first jobs made in one pass of the loop: both are written in the call that
    makes them. Before, the second was queued behind the first until its PUBACK came (or, for a job
    written just before its broker node died, until that PUBACK's timeout: the jobs sent again on the
    next node waited 2 s and the worker's ack deadline, 1 s, failed them first). A PUBACK lost with
    its connection fails no job (``broker_moved`` sends it again); one that never comes does."""
    link = AcksByHand()
    unsent: list[tuple[str, str]] = []
    reported = asyncio.Event()
    out = MqttOut(link, Metrics(), lambda job_id, why: (unsent.append((job_id, why)), reported.set()))
    control = asyncio.create_task(out.run(out.control))
    try:
        for n in range(3):
            out.send(Publish("w/jobs", str(n).encode(), 1, job_id=f"j{n}"))
        assert link.written == ["w/jobs"] * 3  # no await since: all three written here
        link.acks[0].set_exception(PubackLost("the connection closed"))
        link.acks[1].set_result(None)
        link.acks[2].set_exception(BrokerError("publish to w/jobs not acknowledged within 2.0s"))
        async with asyncio.timeout(T):  # the acks' callbacks run in order, in the next pass
            await reported.wait()
        assert unsent == [("j2", "broker_unavailable")]
    finally:
        control.cancel()
        await asyncio.gather(control, return_exceptions=True)
