"""The gateway's cloud tiers against loopback servers that speak the real wire protocols.

In every failure mode the turn completes: with speech from a lower tier, or an error frame that
carries the text. Never silence.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from broker.launcher import Mosquitto
from tests.cloud.edge_server import EdgeStandIn
from tests.cloud.elevenlabs_server import ElevenLabsStandIn
from tests.conftest import Service, T
from tests.wsclient import Turn, collect, send

TEXT = "The cloud voice speaks first. Then it carries on."


def gateway(broker: Mosquitto, el: ElevenLabsStandIn, edge: EdgeStandIn, tiers: str) -> Service:
    svc = Service(
        broker,
        None,
        {
            "SESAME_TIERS": tiers,
            "ELEVENLABS_API_KEY": el.api_key,
            "ELEVENLABS_BASE_URL": el.base_url,
            "SESAME_EDGE_TTS_ENDPOINT": edge.endpoint,
            "SESAME_CACHE_ENABLED": "false",
            "SESAME_TIMEOUT": "4000",
            # These tests are about listeners' fallbacks: one probe round at start, then none for
            # the test's length, so a probe never opens a breaker a test is about to exercise.
            "SESAME_HEALTH_CHECK_INTERVAL": "600000",
        },
    )
    svc.gateway.wait_for(lambda e: e.get("event") == "probe_round_done", 6 * T, "first probe round")
    return svc


@pytest.fixture
def stack(
    mosquitto: Mosquitto,
    elevenlabs_server: ElevenLabsStandIn,
    edge_server: EdgeStandIn,
) -> Iterator[tuple[Service, ElevenLabsStandIn, EdgeStandIn]]:
    svc = gateway(mosquitto, elevenlabs_server, edge_server, "elevenlabs,edge-tts,espeak-ng")
    try:
        yield svc, elevenlabs_server, edge_server
    finally:
        svc.close()


def final_engines(turn: Turn) -> dict[int, str]:
    """The engine each sentence was finally heard in. A sentence whose engine died mid-way was
    restarted from its beginning (``restart: true``), never stitched from two voices."""
    engines: dict[int, str] = {}
    for start in turn.of("sentence_start"):
        seq = int(start["seq"])  # type: ignore[call-overload]
        assert (seq in engines) == bool(start["restart"])
        engines[seq] = str(start["engine"])
    return engines


async def speak(svc: Service, text: str = TEXT):  # type: ignore[no-untyped-def]
    async with connect(svc.ws_url) as ws:
        await ws.recv()
        await send(ws, type="speak", text=text)
        return await collect(ws, 12 * T)


async def test_elevenlabs_speaks_when_healthy(stack: tuple[Service, ElevenLabsStandIn, EdgeStandIn]) -> None:
    svc, _, _ = stack
    turn = await speak(svc)
    assert [s["engine"] for s in turn.of("sentence_start")] == ["elevenlabs", "elevenlabs"]
    assert all(len(turn.audio(int(e["seq"]))) == e["samples"] > 0 for e in turn.of("sentence_end"))  # type: ignore[call-overload]


@pytest.mark.parametrize("mode", ["401", "500", "silence", "die"])
async def test_a_failing_elevenlabs_falls_to_edge_tts(
    stack: tuple[Service, ElevenLabsStandIn, EdgeStandIn], mode: str
) -> None:
    svc, el, _ = stack
    el.mode = mode
    turn = await speak(svc)
    assert [e["seq"] for e in turn.of("sentence_end")] == [0, 1]
    assert final_engines(turn) == {0: "edge-tts", 1: "edge-tts"}
    assert turn.of("fallback")[0]["from"] == "elevenlabs"


@pytest.mark.parametrize("mode", ["500", "silence", "die"])
async def test_both_clouds_failing_falls_to_espeak(
    stack: tuple[Service, ElevenLabsStandIn, EdgeStandIn], mode: str
) -> None:
    svc, el, edge = stack
    el.mode, edge.mode = mode, mode
    turn = await speak(svc)
    assert [e["seq"] for e in turn.of("sentence_end")] == [0, 1]
    assert final_engines(turn) == {0: "espeak-ng", 1: "espeak-ng"}


async def test_no_voice_left_sends_the_text_with_an_error(
    mosquitto: Mosquitto,
    elevenlabs_server: ElevenLabsStandIn,
    edge_server: EdgeStandIn,
) -> None:
    svc = gateway(mosquitto, elevenlabs_server, edge_server, "elevenlabs,edge-tts")
    elevenlabs_server.mode, edge_server.mode = "401", "silence"  # after the start's probe round
    try:
        turn = await speak(svc, "Read this if you cannot hear it.")
    finally:
        svc.close()
    [err] = turn.of("error")
    assert err["text"] == "Read this if you cannot hear it." and err["code"] == "speech_unavailable"
    assert turn.of("turn_end") and not turn.frames
    assert turn.of("fallback")[-1]["to"] == "text"


async def test_metrics_count_fallbacks(stack: tuple[Service, ElevenLabsStandIn, EdgeStandIn]) -> None:
    import httpx

    svc, el, _ = stack
    el.mode = "500"
    await speak(svc, "Count this one.")
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{svc.http_url}/metrics")).text
        plan = (await client.get(f"{svc.http_url}/api/monitoring/voice-metrics")).json()
    assert (
        'sesame_fallbacks_total{from_engine="elevenlabs",reason="upstream_error",to_engine="edge-tts"} 1.0'
        in text
    )
    assert 'sesame_tier_available{tier="elevenlabs"} 0.0' in text
    assert plan["fallbacks"]["edgeTtsUsed"] == 1
    assert set(plan["performance"]) == {"p50Latency", "p95Latency", "p99Latency"}
    assert plan["sesame"]["requests"]["total"] >= 1
