"""Piper end to end: the in-process tier, a Piper worker, and a failover from one to the other."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from broker.audio import rms_dbfs
from broker.launcher import Mosquitto
from tests.conftest import Service, T
from tests.wsclient import Turn, collect, send

from .test_failover_e2e import PARAGRAPH, assert_whole_turn

pytest.importorskip("piper", reason="piper-tts is the 'piper' extra")


@pytest.fixture
def stack(mosquitto: Mosquitto) -> Iterator[Service]:
    svc = Service(
        mosquitto,
        None,
        {
            "SESAME_TIERS": "workers,piper,espeak-ng",
            "SESAME_CACHE_ENABLED": "false",
            "SESAME_RETRY_DELAY": "0",
        },
    )
    try:
        yield svc
    finally:
        svc.close()


def assert_every_sentence_is_speech(turn: Turn) -> None:
    """24 kHz, not silence, and as long as its text (8 to 30 characters a second)."""
    for start in turn.of("sentence_start"):
        seq, text = int(start["seq"]), str(start["text"])  # type: ignore[call-overload]
        assert {f.sample_rate for f in turn.frames if f.seq == seq} == {24_000}
        audio = turn.audio(seq)
        seconds = len(audio) / 24_000
        assert len(text) / 30 < seconds < len(text) / 8 + 0.5, (text, seconds)
        assert rms_dbfs(audio) > -30.0


async def test_the_piper_tier_speaks_when_no_worker_is_there(stack: Service) -> None:
    text = "Nobody is at the workers today. Piper speaks instead."
    async with connect(stack.ws_url) as ws:
        await ws.recv()
        await send(ws, type="speak", text=text)
        turn = await collect(ws, 8 * T)
    assert_whole_turn(turn, 2)
    assert [s["engine"] for s in turn.of("sentence_start")] == ["piper", "piper"]
    assert_every_sentence_is_speech(turn)


async def test_a_piper_worker_speaks_and_its_turn_fails_over_to_the_piper_tier_in_one_voice(
    stack: Service,
) -> None:
    worker = stack.start_worker("piper-1", engine="piper")
    async with connect(stack.ws_url) as ws:
        await ws.recv()
        await send(ws, type="speak", text=PARAGRAPH)
        first = await collect(ws, 6 * T, until="sentence_start")
        worker.signal(signal.SIGKILL)
        rest = await collect(ws, 12 * T)
    turn = Turn(first.messages + rest.messages, first.frames + rest.frames)
    assert_whole_turn(turn, 6)
    # The kill lands while the worker still holds the turn's first jobs (three are sent ahead), so
    # the turn falls back; worker and tier are the same Piper voice, so every sentence is "piper".
    fallbacks = turn.of("fallback")
    assert fallbacks and {(f["from"], f["to"], f["reason"]) for f in fallbacks} == {
        ("piper", "piper", "worker_dead")
    }
    assert {s["engine"] for s in turn.of("sentence_start")} == {"piper"}
    change = stack.gateway.wait_for(
        lambda e: e.get("event") == "worker_change" and e.get("up") is False, T, "worker down"
    )
    assert change["worker_id"] == "piper-1"
    assert_every_sentence_is_speech(turn)


def test_piper_is_a_tier_before_espeak_ng_by_default() -> None:
    from stream_server.config import GatewayConfig
    from stream_server.hub.tier_engines import build_local_engines
    from synth_worker.piper import PiperEngine
    from synth_worker.voices import VoiceMap

    config = GatewayConfig.from_env({"SESAME_PIPER_VOICE": "/m/x.onnx"})
    tiers = config.failover.tiers
    assert tiers.index("piper") == tiers.index("espeak-ng") - 1
    engines = build_local_engines(config, VoiceMap())
    piper = engines["piper"]
    assert isinstance(piper, PiperEngine) and piper.voice_override == "/m/x.onnx"
