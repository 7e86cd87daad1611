"""The service on a real two-node broker cluster (aedes + Redis, tests/support/cluster.py).

Gateway ``gw-a`` is told of three nodes, the first one dead (``dead,a,b``): it comes up on node a.
Gateway ``gw-b`` and an espeak-ng worker are told of node b alone (so a worker whose connection a
starved CPU lets lapse comes back to node b, and the turns stay across nodes). Every sentence
goes gateway -> node a -> Redis -> node b -> worker and back: spoken across nodes. aedes refuses
``$share``, so both gateways open MQTT-only sessions by claim alone, and exactly one does. Last,
node a is SIGKILLed in the middle of a websocket turn: gw-a's link moves to node b and the turn is
finished there, every sentence once, in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import pytest
from websockets.asyncio.client import connect

from broker.audio import AudioFrame
from broker.launcher import free_port
from broker.settings import MqttUrl
from tests.conftest import T
from tests.support.cluster import Cluster
from tests.support.localstack import Event, Proc, Stack
from tests.wsclient import Turn, collect, send

# Workers only: a sentence the worker across the cluster did not speak is an error frame, not a
# quiet fallback to a local voice.
ENV = {"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false", "SESAME_RETRY_DELAY": "0"}
WORDS = ("one", "two", "three", "four", "five", "six")
PARAGRAPH = " ".join(f"Sentence number {word} of the story goes here." for word in WORDS)


@dataclass
class Deployment:
    cluster: Cluster
    stack: Stack  # gw-a and the worker
    gw_b: Proc

    def gateways(self) -> tuple[Proc, Proc]:
        return self.stack.gateway, self.gw_b

    def logs(self, event: str, **fields: object) -> list[Event]:
        return [
            e
            for proc in self.gateways()
            for e in proc.events()
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with Cluster(heartbeat_ms=500, start_timeout=6 * T) as cluster:
        dead = MqttUrl("127.0.0.1", free_port())
        urls_a = f"{dead},{cluster.urls('a')}"
        stack = Stack(
            {**ENV, "SESAME_GATEWAY_ID": "gw-a", "SESAME_MQTT_URL": urls_a},
            broker=cluster,  # type: ignore[arg-type]  # a Stack only reads its url
            start_timeout=6 * T,
        )
        gw_b: Proc | None = None
        try:
            node_b = str(cluster.nodes["b"].url)
            stack.start_worker("espeak-b", engine="espeak-ng", SESAME_MQTT_URL=node_b)
            gw_b = Proc(
                ["gateway"],
                {**stack.env, **ENV, "SESAME_GATEWAY_ID": "gw-b", "SESAME_PORT": str(free_port()),
                 "SESAME_MQTT_URL": node_b},
                "gateway-b",
            )  # fmt: skip
            gw_b.wait_for(
                lambda e: e.get("event") == "worker_change" and e.get("up") is True, 12 * T, "worker on gw-b"
            )
            yield Deployment(cluster, stack, gw_b)
        finally:
            if gw_b is not None:
                gw_b.stop()
            stack.close()


def node_of(proc: Proc, event: str = "mqtt_connected") -> str:
    return str([e for e in proc.events() if e.get("event") == event][-1]["broker"])


async def test_first_node_dead_the_gateway_comes_up_and_speaks_across_nodes(deployment: Deployment) -> None:
    cluster, stack = deployment.cluster, deployment.stack
    assert node_of(stack.gateway) == str(cluster.nodes["a"].url)
    assert node_of(stack.workers["espeak-b"]) == str(cluster.nodes["b"].url)
    async with httpx.AsyncClient() as client:
        ready = (await client.get(f"{stack.http_url}/ready")).json()
        metrics = (await client.get(f"{stack.http_url}/metrics")).text
    assert ready["broker_node"] == str(cluster.nodes["a"].url)
    assert f'sesame_mqtt_node{{node="{cluster.nodes["a"].url}"}} 1.0' in metrics
    async with connect(stack.ws_url) as ws:
        await ws.recv()
        await send(ws, type="speak", text="Across the cluster. Node to node.")
        turn = await collect(ws, 8 * T)
    assert [s["text"] for s in turn.of("sentence_start")] == ["Across the cluster.", "Node to node."]
    assert turn.of("error") == [] and len(turn.audio(1)) > 2400


async def test_shared_subscriptions_refused_one_gateway_opens_by_claim(deployment: Deployment) -> None:
    a, b = deployment.cluster.nodes["a"].url, deployment.cluster.nodes["b"].url
    for proc in deployment.gateways():
        [refused] = [e for e in proc.events() if e.get("event") == "mqtt_shared_subscription_refused"]
        assert refused["reason_code"] == "0x9e" and refused["opening"] == "claim_only"
    root = "sesame/v1/sessions/dev-c1"
    async with (
        aiomqtt.Client(b.host, b.port, protocol=aiomqtt.ProtocolVersion.V5, identifier="test-sub") as sub,
        aiomqtt.Client(a.host, a.port, protocol=aiomqtt.ProtocolVersion.V5, identifier="test-pub") as pub,
    ):
        await sub.subscribe(f"{root}/events", 1)
        await sub.subscribe(f"{root}/audio", 1)
        await pub.publish(f"{root}/open", b'{"type":"open"}', qos=1)
        # Sent at once, inside the bid window: held by the gateways and replayed by the winner.
        text = b'{"type":"text","text":"One gateway answers.","flush":true}'
        await pub.publish(f"{root}/text", text, qos=1)
        events: list[dict[str, object]] = []
        frames: list[AudioFrame] = []
        async with asyncio.timeout(8 * T):
            async for message in sub.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                if message.topic.value.endswith("/audio"):
                    frames.append(AudioFrame.from_bytes(payload))
                    continue
                events.append(json.loads(payload))
                if events[-1]["type"] == "turn_end":
                    break
    assert [e["type"] for e in events].count("ready") == 1
    assert [e["text"] for e in events if e["type"] == "sentence_start"] == ["One gateway answers."]
    [end] = [e for e in events if e["type"] == "sentence_end"]
    assert sum(f.samples for f in frames) == end["samples"] > 2400
    assert len(deployment.logs("mqtt_session_opened", session_id="dev-c1")) == 1
    assert len(deployment.logs("mqtt_session_bid_lost", session_id="dev-c1")) == 1


async def test_up_with_the_first_node_dead_comes_up_and_speaks(
    deployment: Deployment, tmp_path: Path
) -> None:
    """`sesame-voice up` (its supervisor's link, its worker and gateway) on a node list whose
    first node is dead: everything lands on the next node and speaks."""
    cluster = deployment.cluster
    port = free_port()
    env = {**ENV, "SESAME_PORT": str(port), "SESAME_RUN_DIR": str(tmp_path), "SESAME_ENGINE": "espeak-ng"}
    env["SESAME_MQTT_URL"] = f"{MqttUrl('127.0.0.1', free_port())},{cluster.nodes['b'].url}"
    up = Proc(["up", "--workers", "1"], env, "up")
    try:
        up.wait_for(
            lambda e: e.get("event") == "worker_change" and e.get("worker_id") == "worker-1" and e.get("up"),
            12 * T,
            "up's worker ready",
        )
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.recv()
            await send(ws, type="speak", text="Up on the second node.")
            turn = await collect(ws, 8 * T)
    finally:
        up.stop(20)
    assert turn.of("error") == [] and len(turn.of("sentence_end")) == 1
    landed = {e.get("client_id"): e.get("broker") for e in up.events() if e.get("event") == "mqtt_connected"}
    assert len(landed) >= 3 and set(landed.values()) == {str(cluster.nodes["b"].url)}  # up, worker, gateway


async def test_the_gateways_node_killed_mid_turn_the_turn_ends_on_the_other(deployment: Deployment) -> None:
    """Last in this module: it kills node a."""
    cluster, stack = deployment.cluster, deployment.stack
    gateway = stack.gateway
    async with connect(stack.ws_url) as ws:
        await ws.recv()
        await send(ws, type="speak", text=PARAGRAPH)
        first = await collect(ws, 8 * T, until="sentence_start")
        since = len(gateway.lines)
        cluster.kill("a")
        rest = await collect(ws, 8 * T)
    turn = Turn(first.messages + rest.messages, first.frames + rest.frames)
    moved = gateway.wait_for(
        lambda e: e.get("event") == "mqtt_connected", 4 * T, "connected again", since=since
    )
    assert moved["broker"] == str(cluster.nodes["b"].url)
    # Every sentence once, in order, each with the audio it announced, from the worker: none lost
    # (no error frame carrying its text), none doubled (a restarted sentence keeps its seq).
    ends = turn.of("sentence_end")
    assert [e["seq"] for e in ends] == list(range(6)), turn.messages
    assert turn.of("error") == [] and [m["type"] for m in turn.messages].count("turn_end") == 1
    # Jobs in flight when the link moved were sent again (their replies were lost with node a).
    assert {f["reason"] for f in turn.of("fallback")} <= {"broker_moved"}
    for end in ends:
        assert len(turn.audio(int(end["seq"]))) >= int(end["samples"]) > 0  # type: ignore[call-overload]
    async with httpx.AsyncClient() as client:
        ready = (await client.get(f"{stack.http_url}/ready")).json()
    assert ready["broker_node"] == str(cluster.nodes["b"].url) and ready["ready"] is True
